# Shared by the reference scripts: where to write, and how.
#
# Every script is run as `Rscript tests/reference/<script>.R [output directory]` (the default
# output directory is the script's own folder) and writes one JSON file holding its inputs, the
# reference package's results, and the versions of R and of every package that produced them.

suppressPackageStartupMessages(library(jsonlite))

reference_dir <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  if (length(args) >= 1L) return(args[[1L]])
  file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  dirname(normalizePath(sub("^--file=", "", file_arg[[1L]])))
}

load_packages <- function(packages) {
  for (p in packages) suppressPackageStartupMessages(library(p, character.only = TRUE))
}

# Inputs are stored with 15 significant digits; rounding them first lets the Python side compute
# on exactly the numbers R computed on.
stored <- function(x) signif(x, 15)

write_reference <- function(name, packages, cases, script) {
  versions <- lapply(packages, function(p) utils::packageDescription(p)$Version)
  names(versions) <- packages
  out <- list(
    script = script,
    r_version = R.version.string,
    packages = versions,
    cases = cases
  )
  path <- file.path(reference_dir(), paste0(name, ".json"))
  writeLines(layout_json(out), path)
  invisible(path)
}

compact_json <- function(x) {
  toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null", dataframe = "columns")
}

# Named lists one entry a line down to the fourth level, everything below on one line: the
# results stay readable in a diff while the input data stay compact.
layout_json <- function(x, depth = 0L) {
  if (!is.list(x) || is.null(names(x)) || depth >= 4L) return(compact_json(x))
  pad <- strrep(" ", depth + 1L)
  entries <- vapply(names(x), function(k) {
    paste0(pad, compact_json(k), ": ", layout_json(x[[k]], depth + 1L))
  }, character(1))
  paste0("{\n", paste(entries, collapse = ",\n"), "\n", strrep(" ", depth), "}")
}
