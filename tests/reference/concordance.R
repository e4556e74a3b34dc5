# Kendall's coefficient of concordance W with the tie correction and its chi-square test, from
# Friedman's test (stats::friedman.test, raters as blocks and ranked objects as groups:
# W = chi2 / (m (n - 1))). Output: concordance.json.
#
# Datasets: friedman.test's help-page RoundingTimes (22 players, 3 methods, no ties); R's
# attitude survey (30 departments rating 7 questions, many ties); the help page's warpbreaks
# example (mean breaks: 3 tensions as raters, 2 wools as objects).

file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
source(file.path(dirname(normalizePath(sub("^--file=", "", file_arg[[1L]]))), "common.R"))
packages <- c("stats", "jsonlite")
load_packages(packages)

RoundingTimes <- matrix(c(5.40, 5.50, 5.55, 5.85, 5.70, 5.75, 5.20, 5.60, 5.50, 5.55, 5.50, 5.40,
                          5.90, 5.85, 5.70, 5.45, 5.55, 5.60, 5.40, 5.40, 5.35, 5.45, 5.50, 5.35,
                          5.25, 5.15, 5.00, 5.85, 5.80, 5.70, 5.25, 5.20, 5.10, 5.65, 5.55, 5.45,
                          5.60, 5.35, 5.45, 5.05, 5.00, 4.95, 5.50, 5.50, 5.40, 5.45, 5.55, 5.50,
                          5.55, 5.55, 5.35, 5.45, 5.50, 5.55, 5.50, 5.45, 5.25, 5.65, 5.60, 5.40,
                          5.70, 5.65, 5.55, 6.30, 6.30, 6.25),
                        nrow = 22, byrow = TRUE)
wb <- aggregate(warpbreaks$breaks, by = list(w = warpbreaks$wool, t = warpbreaks$tension), FUN = mean)

concordance_case <- function(description, scores) {
  scores <- unname(as.matrix(scores))
  test <- friedman.test(scores)
  m <- nrow(scores)
  n <- ncol(scores)
  # each rater's ranks, ties averaged (1 = smallest score)
  ranks <- t(apply(scores, 1, rank))
  list(description = description, ranks = unname(lapply(seq_len(m), function(i) ranks[i, ])),
       w = unname(test$statistic) / (m * (n - 1)), chi2 = unname(test$statistic),
       df = unname(test$parameter), p = test$p.value)
}

cases <- list(
  rounding_times = concordance_case("RoundingTimes (friedman.test help page): 22 players ranking 3 rounding methods",
                                    RoundingTimes),
  attitude = concordance_case("attitude (R datasets): 30 departments ranking 7 survey questions", attitude),
  warpbreaks = concordance_case("warpbreaks (friedman.test help page): 3 tensions ranking 2 wools by mean breaks",
                                xtabs(x ~ t + w, data = wb))
)

write_reference("concordance", packages, cases, "concordance.R")
