"""The embedding audit, needing no experts: attribute confusion, distance sharing, paired model comparison."""
