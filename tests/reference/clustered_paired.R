# Identity-clustered paired tests: Durkalski's clustered McNemar (clust.bin.pair), Datta and
# Satten's clustered signed-rank test (clusrank, method "ds"), and Tango's score interval for a
# paired difference of proportions (PropCIs::scoreci.mp), the last also on counts divided by the
# identity design effect. Output: clustered_paired.json.
#
# Datasets: clust.bin.pair's psychiatry, thyroids and obfuscation (pairs of binary outcomes within
# clusters); clusrank's crsd (balanced) and crsdUnb (unbalanced clusters), the latter also
# rounded to whole numbers for ties and zeros; Tango's counts from PropCIs' example and the
# boundary cases b = 0, c = 0, b = c = 0, b = n and c = n.

file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
source(file.path(dirname(normalizePath(sub("^--file=", "", file_arg[[1L]]))), "common.R"))
packages <- c("clust.bin.pair", "clusrank", "PropCIs", "jsonlite")
load_packages(packages)

# ---------------------------------------------------------------- pairs of binary outcomes
# one row per pair: the cluster, the first (baseline) and second (condition) outcome
expand_tables <- function(cluster, ak, bk, ck, dk) {
  counts <- cbind(ak, bk, ck, dk)
  first <- c(1, 1, 0, 0)
  second <- c(1, 0, 1, 0)
  rows <- lapply(seq_along(cluster), function(k) {
    times <- counts[k, ]
    data.frame(cluster = rep(cluster[k], sum(times)), first = rep(first, times), second = rep(second, times))
  })
  do.call(rbind, rows)
}

# With few discordant clusters the chi-square reference is poor; the exact alternative is the
# randomisation distribution of Durkalski's numerator, every sign pattern of the cluster means
# x_k = (c_k - b_k) / n_k that are not zero (computed here, not by a package; NA beyond 16).
exact_sign_flip_p <- function(tables) {
  x <- with(tables, (ck - bk) / (ak + bk + ck + dk))
  x <- x[x != 0]
  if (length(x) == 0L || length(x) > 16L) return(NA_real_)
  signs <- as.matrix(expand.grid(rep(list(c(-1, 1)), length(x))))
  mean(abs(signs %*% x) >= abs(sum(x)) * (1 - 1e-12))
}

paired_case <- function(description, pairs) {
  tables <- aggregate(cbind(ak = first & second, bk = first & !second, ck = !first & second,
                            dk = !first & !second) ~ cluster, data = pairs, FUN = sum)
  test <- clust.bin.pair(tables$ak, tables$bk, tables$ck, tables$dk, method = "durkalski")
  # Tango's interval on counts divided by the design effect: identity-clustered over query-level
  # variance of the estimate (c - b) / n, floored at 1
  d <- pairs$second - pairs$first
  n <- length(d)
  b <- sum(d < 0)
  c <- sum(d > 0)
  estimate <- (c - b) / n
  per_cluster <- tapply(d, pairs$cluster, sum)
  size <- tapply(d, pairs$cluster, length)
  independent <- sum((d - estimate)^2)
  deff <- if (independent > 0) max(1, sum((per_cluster - size * estimate)^2) / independent) else 1
  tango <- scoreci.mp(b / deff, c / deff, n / deff, conf.level = 0.95)$conf.int
  list(description = description, cluster = pairs$cluster, baseline = pairs$first, condition = pairs$second,
       durkalski = list(chi2 = unname(test$statistic), p = test$p.value,
                        exact_sign_flip_p = exact_sign_flip_p(tables)),
       rank1 = list(b = b, c = c, n = n, delta = estimate, design_effect = deff,
                    ci_low = tango[1], ci_high = tango[2]))
}

paired <- list()
paired$psychiatry <- paired_case(
  "psychiatry (clust.bin.pair): psychiatrist and patient ratings, clustered by psychiatrist",
  with(psychiatry, expand_tables(psychiatrist, ah, bh, ch, dh)))
thyroid_pairs <- do.call(rbind, lapply(seq_len(nrow(thyroids)), function(k) {
  data.frame(cluster = thyroids$patient[k], first = thyroids$x.pet[[k]], second = thyroids$x.spect[[k]])
}))
paired$thyroids <- paired_case(
  "thyroids (clust.bin.pair): PET against SPECT per gland, clustered by patient", thyroid_pairs)
paired$obfuscation <- paired_case(
  "obfuscation (clust.bin.pair): control against obfuscated code per item, clustered by subject",
  with(obfuscation, data.frame(cluster = subject, first = control, second = treatment)))

# ---------------------------------------------------------------- Datta-Satten signed-rank
signed_rank_case <- function(description, z, cluster) {
  # clusrank's "ds" method reads each cluster as a contiguous block in the order of the sorted
  # cluster labels: unsorted rows give a wrong statistic
  order_rows <- order(cluster)
  z <- z[order_rows]
  cluster <- cluster[order_rows]
  test <- clusWilcox.test(z, cluster = cluster, paired = TRUE, method = "ds")
  variance <- unname(test$vsrstat)
  list(description = description, cluster = cluster, difference = z,
       statistic = unname(test$statistic) * sqrt(variance), variance = variance,
       z = unname(test$statistic), p = test$p.value)
}

signed_rank <- list()
signed_rank$crsd <- signed_rank_case("crsd (clusrank): balanced clusters of two", crsd$z, crsd$id)
signed_rank$crsdUnb <- signed_rank_case("crsdUnb (clusrank): unbalanced clusters", stored(crsdUnb$z), crsdUnb$id)
signed_rank$crsdUnb_rounded <- signed_rank_case(
  "crsdUnb (clusrank) rounded to whole numbers: ties and zeros", round(crsdUnb$z), crsdUnb$id)

# ---------------------------------------------------------------- Tango's interval
tango_counts <- list(
  example = c(b = 40, c = 20, n = 160),   # PropCIs' help page
  no_loss = c(b = 0, c = 7, n = 30),
  no_gain = c(b = 9, c = 0, n = 30),
  no_discordant = c(b = 0, c = 0, n = 25),
  all_lost = c(b = 30, c = 0, n = 30),
  all_gained = c(b = 0, c = 30, n = 30),
  fractional = c(b = 12.5, c = 4.25, n = 61.75)
)
tango <- lapply(tango_counts, function(x) {
  ci <- scoreci.mp(x[["b"]], x[["c"]], x[["n"]], conf.level = 0.95)$conf.int
  list(b = x[["b"]], c = x[["c"]], n = x[["n"]], conf_level = 0.95, ci_low = ci[1], ci_high = ci[2])
})

write_reference("clustered_paired", packages,
                list(durkalski_tango = paired, datta_satten = signed_rank, tango = tango),
                "clustered_paired.R")
