# Between-run heterogeneity and pooled effects with independent (diagonal) sampling variances:
# the Paule-Mandel tau^2, its Q-profile interval and Cochran's Q (metafor: rma.uni method "PM",
# confint), and the pooled mean of a label's runs and the contrast of two labels, which with
# independent errors are the one-sample and the Welch t interval (stats::t.test).
# Output: metaanalysis.json.
#
# metafor's root finders stop at an absolute tolerance of about 1e-4 by default, as coarse as a
# tau^2 of ΔmAP-sized effects (variances near 1e-5) itself; every call here sets it to 1e-15.
# Datasets (metafor's metadat): dat.bcg (log risk ratios), dat.normand1999 (mean differences),
# dat.hine1989 (risk differences, no heterogeneity beyond sampling error), dat.bcg scaled to
# ΔmAP-sized effects (yi / 100, vi / 10^4), and its first three trials scaled so (three seeds).

file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
source(file.path(dirname(normalizePath(sub("^--file=", "", file_arg[[1L]]))), "common.R"))
packages <- c("metafor", "jsonlite")
load_packages(packages)

tight <- list(tol = 1e-15, maxiter = 10000)

heterogeneity_case <- function(description, yi, vi) {
  yi <- stored(yi)
  vi <- stored(vi)
  fit <- rma.uni(yi, vi, method = "PM", control = tight)
  ci <- confint(fit, control = tight)$random["tau^2", ]
  coarse <- rma.uni(yi, vi, method = "PM")
  coarse_ci <- confint(coarse)$random["tau^2", ]
  list(description = description, yi = yi, vi = vi, conf_level = 0.95,
       tau2 = fit$tau2, tau2_low = unname(ci["ci.lb"]), tau2_high = unname(ci["ci.ub"]), q = fit$QE,
       default_tolerance = list(tau2 = coarse$tau2, tau2_low = unname(coarse_ci["ci.lb"]),
                                tau2_high = unname(coarse_ci["ci.ub"])))
}

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
normand <- escalc(measure = "MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i,
                  data = dat.normand1999)
hine <- escalc(measure = "RD", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = dat.hine1989)

heterogeneity <- list(
  bcg = heterogeneity_case("dat.bcg: log risk ratios of 13 BCG trials", bcg$yi, bcg$vi),
  normand1999 = heterogeneity_case("dat.normand1999: mean differences in length of stay, 9 studies",
                                   normand$yi, normand$vi),
  hine1989 = heterogeneity_case("dat.hine1989: risk differences, 6 studies", hine$yi, hine$vi),
  bcg_delta_map = heterogeneity_case("dat.bcg scaled to ΔmAP-sized effects: yi / 100, vi / 10^4",
                                     bcg$yi / 100, bcg$vi / 1e4),
  bcg_three_runs = heterogeneity_case("dat.bcg, first three trials, scaled as bcg_delta_map",
                                      bcg$yi[1:3] / 100, bcg$vi[1:3] / 1e4)
)

t_case <- function(test) {
  list(estimate = unname(if (length(test$estimate) == 2) test$estimate[1] - test$estimate[2] else test$estimate),
       se = test$stderr, df = unname(test$parameter), ci_low = test$conf.int[1], ci_high = test$conf.int[2],
       statistic = unname(test$statistic), p = test$p.value, conf_level = 0.95)
}
theta <- stored(bcg$yi / 100)
random <- dat.bcg$alloc == "random"
pooled <- list(
  description = "dat.bcg scaled as bcg_delta_map: runs of label 0 = randomly allocated trials, label 1 = the others",
  theta = theta, vi = stored(bcg$vi / 1e4), label = as.integer(!random),
  mean_label0 = t_case(t.test(theta[random], conf.level = 0.95)),
  contrast_label0_minus_label1 = t_case(t.test(theta[random], theta[!random], var.equal = FALSE, conf.level = 0.95))
)

write_reference("metaanalysis", packages, list(heterogeneity = heterogeneity, pooled = pooled), "metaanalysis.R")
