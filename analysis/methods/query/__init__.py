"""Query-level explanatory analysis: a binomial GLM and an XGBoost surrogate of the AP change."""
