# Holm's and Benjamini-Hochberg's adjusted p-values (stats::p.adjust), with untested entries
# (NA: left out of the family, n = the number of tested entries) and ties. Output: corrections.json.
#
# Datasets: p.adjust's help-page example (50 two-sided normal p-values, set.seed(123)) with
# entries 3, 17 and 40 made untested; a family with ties and p-values of 1; one tested entry among
# untested ones; no tested entry.

file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
source(file.path(dirname(normalizePath(sub("^--file=", "", file_arg[[1L]]))), "common.R"))
packages <- c("stats", "jsonlite")
load_packages(packages)

set.seed(123)
x <- rnorm(50, mean = c(rep(0, 25), rep(3, 25)))
help_example <- 2 * pnorm(sort(-abs(x)))
help_example[c(3, 17, 40)] <- NA

families <- list(
  help_example = help_example,
  ties = c(0.01, 0.04, NA, 0.04, 0.03, 1, 0.01, 0.2, 1, 0.04),
  one_tested = c(NA, 0.03, NA),
  none_tested = c(NA_real_, NA_real_)
)
cases <- lapply(families, function(p) {
  p <- stored(p)
  list(p = I(p), holm = I(p.adjust(p, "holm")), bh = I(p.adjust(p, "BH")))
})

write_reference("corrections", packages, cases, "corrections.R")
