# CR2 standard errors, Satterthwaite degrees of freedom and HTZ tests of logistic GLMs whose
# weights vary within clusters, by clubSandwich (vcovCR type "CR2", coef_test "Satterthwaite",
# Wald_test "HTZ"). Output: cr2_glm.json.
#
# Datasets:
# - achievement_awards: clubSandwich's AchievementAwardsRCT, girls of the 2001 cohort; 0/1
#   outcome (Bagrut_status), clustered by school; the student covariates vary within schools,
#   so the fitted probabilities (and the GLM weights) do too. clubSandwich's default target.
# - bcg: metafor's dat.bcg (BCG vaccine trials) as a grouped binomial, one row per trial arm
#   (cases out of arm size), clustered by trial.
# - mortality: clubSandwich's MortalityRates, motor-vehicle deaths out of the state's 18-20 year
#   old population, clustered by state.
# For the two grouped-binomial datasets the response variances mu (1 - mu) / trials are below
# 1e-6, where clubSandwich's absolute eigenvalue threshold (1e-12) zeroes the adjustment; the
# same target is therefore passed rescaled to mean 1 (`target`, `inverse_var = FALSE`), which
# leaves the CR2 estimator and its degrees of freedom unchanged (the adjustment depends only on
# the target's ratios within a cluster).

file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
source(file.path(dirname(normalizePath(sub("^--file=", "", file_arg[[1L]]))), "common.R"))
packages <- c("clubSandwich", "metafor", "jsonlite")
load_packages(packages)

tight <- glm.control(epsilon = 1e-12, maxit = 100)

cr2_case <- function(description, data, formula, cluster, hypotheses, grouped = FALSE) {
  data <- data[complete.cases(data), ]
  fit <- glm(formula, family = binomial, data = data, control = tight)
  # glm's bread and weights come from the last IRLS step, i.e. the previous iterate's fitted
  # values; one more fit started at the estimate makes them the estimate's own
  fit <- glm(formula, family = binomial, data = data, control = tight, start = coef(fit))
  if (!fit$converged) stop("the GLM did not converge: ", description)
  if (grouped) {
    mu <- fitted(fit)
    target <- mu * (1 - mu) / weights(fit, type = "prior")
    V <- vcovCR(fit, cluster = data[[cluster]], type = "CR2", target = target / mean(target),
                inverse_var = FALSE)
  } else {
    V <- vcovCR(fit, cluster = data[[cluster]], type = "CR2")
  }
  tests <- coef_test(fit, vcov = V, test = "Satterthwaite")
  htz <- lapply(hypotheses, function(terms) {
    which <- match(terms, names(coef(fit)))
    w <- Wald_test(fit, constraints = constrain_zero(which), vcov = V, test = "HTZ")
    list(terms = I(terms), Fstat = w$Fstat, df_num = w$df_num, df_denom = w$df_denom, p = w$p_val)
  })
  X <- model.matrix(fit)
  V <- as.matrix(V)
  list(
    description = description,
    target = if (grouped) "mu (1 - mu) / trials, rescaled to mean 1" else "default",
    terms = I(colnames(X)),
    X = unname(lapply(seq_len(ncol(X)), function(j) X[, j])),
    successes = if (grouped) data$successes else fit$y,
    trials = if (grouped) data$trials else NULL,
    cluster = data[[cluster]],
    coef = unname(coef(fit)),
    se = unname(sqrt(diag(V))),
    vcov = unname(lapply(seq_len(ncol(V)), function(j) V[, j])),
    df_satterthwaite = tests$df_Satt,
    p_satterthwaite = tests$p_Satt,
    htz = htz
  )
}

cases <- list()

a <- subset(AchievementAwardsRCT, year == "2001" & sex == "Girl")
a <- data.frame(Bagrut_status = a$Bagrut_status, treated = a$treated, immigrant = a$immigrant,
                siblings = a$siblings, father_ed = a$father_ed, mother_ed = a$mother_ed,
                lagscore = stored(a$lagscore), school = a$school_id)
cases$achievement_awards <- cr2_case(
  "AchievementAwardsRCT (clubSandwich), 2001 girls: Bagrut_status ~ treated + immigrant + siblings + father_ed + mother_ed + lagscore, clustered by school",
  a, Bagrut_status ~ treated + immigrant + siblings + father_ed + mother_ed + lagscore, "school",
  list(c("father_ed", "mother_ed"), c("treated", "immigrant", "siblings"), "lagscore"))

b <- dat.bcg
bcg <- data.frame(trial = rep(b$trial, 2), treated = rep(c(1, 0), each = nrow(b)), ablat = rep(b$ablat, 2),
                  successes = c(b$tpos, b$cpos), trials = c(b$tpos + b$tneg, b$cpos + b$cneg))
cases$bcg <- cr2_case(
  "dat.bcg (metafor): tuberculosis cases out of each trial arm ~ treated + ablat, clustered by trial",
  bcg, cbind(successes, trials - successes) ~ treated + ablat, "trial",
  list(c("treated", "ablat")), grouped = TRUE)

m <- subset(MortalityRates, cause == "Motor Vehicle")
m <- data.frame(state = m$state, successes = m$count, trials = m$pop,
                legal = stored(m$legal), beertaxa = stored(m$beertaxa))
cases$mortality <- cr2_case(
  "MortalityRates (clubSandwich): motor-vehicle deaths out of the population ~ legal + beertaxa, clustered by state",
  m, cbind(successes, trials - successes) ~ legal + beertaxa, "state",
  list(c("legal", "beertaxa")), grouped = TRUE)

write_reference("cr2_glm", packages, cases, "cr2_glm.R")
