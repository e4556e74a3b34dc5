"""The output formats of a report (HTML, Markdown, JSON) and the columns a table shows."""
