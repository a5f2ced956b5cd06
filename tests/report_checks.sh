#!/usr/bin/env bash
# The report's renderings checked by the real programs that read them
# (`make check-report`, which installs chromium and TeX Live first):
#
#   1. two small sweeps (the quickstart model on two synthetic datasets,
#      4 seeds, predictions saved) through `sigsweep run`;
#   2. `sigsweep report A B --layout paper --format tex` compiled with
#      pdflatex and booktabs, and the single-sweep LaTeX tables with the
#      Statistics paragraph and its report.bib through bibtex;
#   3. the HTML report opened in headless Chromium: no console errors, every
#      plot present (an <svg> per plot, no "unavailable" placeholder), and
#      screenshots written to docs/.
#
# Usage: bash tests/report_checks.sh [SIGSWEEP]   (default target/release/sigsweep)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$(realpath "${1:-$REPO/target/release/sigsweep}")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$CHROMIUM" ] || { echo "report checks: chromium is not installed (make check-report installs it)" >&2; exit 2; }
command -v pdflatex >/dev/null || { echo "report checks: pdflatex is not installed" >&2; exit 2; }
fail() { echo "report checks: FAILED: $*" >&2; exit 1; }

# 1. Two sweeps.
for noise in 1.5 2.5; do
    sed -e "s/^name = \"quickstart\"/name = \"noise-$noise\"/" \
        -e 's/^seeds = 10/seeds = 4/' \
        -e 's/^epochs = 12/epochs = 4\nsave = ["predictions"]/' \
        -e "s/noise = 1.5/noise = $noise/" \
        "$REPO/configs/quickstart.toml" > "$WORK/noise-$noise.toml"
    "$BIN" run "$WORK/noise-$noise.toml" --state-dir "$WORK/noise-$noise" --no-progress > "$WORK/run-$noise.log" 2>&1 \
        || { cat "$WORK/run-$noise.log"; fail "sigsweep run (noise $noise)"; }
done
A="$WORK/noise-1.5"
B="$WORK/noise-2.5"

# 2. LaTeX: the paper table, the per-sweep tables and the paragraph.
"$BIN" report "$A" "$B" --layout paper --format tex --out "$WORK/paper.tex"
grep -q 'multicolumn' "$WORK/paper.tex" || fail "the paper table has no column groups"
"$BIN" report "$A" --format tex --out "$WORK/tables.tex" 2>/dev/null
cat > "$WORK/doc.tex" <<'TEX'
\documentclass{article}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage{natbib}
\usepackage[margin=1.5cm,landscape]{geometry}
\begin{document}
\input{paper.tex}
\input{tables.tex}
\section*{Statistics}
\input{statistics.tex}
\bibliographystyle{plainnat}
\bibliography{report}
\end{document}
TEX
(
    cd "$WORK"
    pdflatex -interaction=nonstopmode -halt-on-error doc.tex > latex1.log 2>&1 || { tail -30 latex1.log; fail "pdflatex"; }
    bibtex doc > bibtex.log 2>&1 || { cat bibtex.log; fail "bibtex"; }
    pdflatex -interaction=nonstopmode -halt-on-error doc.tex > latex2.log 2>&1 || { tail -30 latex2.log; fail "pdflatex (2nd pass)"; }
    pdflatex -interaction=nonstopmode -halt-on-error doc.tex > latex3.log 2>&1 || { tail -30 latex3.log; fail "pdflatex (3rd pass)"; }
    if grep -E "Citation .* undefined|There were undefined references" latex3.log; then fail "undefined citations"; fi
)
echo "report checks: LaTeX (paper table, tables, Statistics paragraph, report.bib) compiles: $(pdfinfo "$WORK/doc.pdf" 2>/dev/null | grep Pages || echo ok)"

# 3. HTML in headless Chromium.
"$BIN" report "$A" --format html --out "$WORK/report.html" 2>/dev/null
"$BIN" report "$A" "$B" --layout paper --format html --out "$WORK/paper.html"
chrome() {
    "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
        --enable-logging=stderr --v=0 "$@"
}
for page in report paper; do
    chrome --dump-dom "file://$WORK/$page.html" > "$WORK/$page.dom" 2> "$WORK/$page.console"
    if grep -E 'CONSOLE|Uncaught|SyntaxError' "$WORK/$page.console"; then fail "$page.html: console errors"; fi
    [ -s "$WORK/$page.dom" ] || fail "$page.html: Chromium rendered nothing"
done
grep -q 'plot-error' "$WORK/report.dom" && fail "report.html: a plot is unavailable"
svgs=$(grep -o '<svg' "$WORK/report.dom" | wc -l)
# Per metric: 2 sensitivity plots and a forest plot; small multiples: 3
# comparisons x 3 metrics; one learning-curve figure.
want=$((3 * 3 + 3 * 3 + 1))
[ "$svgs" -eq "$want" ] || fail "report.html has $svgs plots, expected $want"
for section in 'Forest plot' 'Per-seed pairs' 'Learning curves' 'Per-example analysis' 'Confusion matrix' 'Statistics' 'Reproducibility'; do
    grep -q "$section" "$WORK/report.dom" || fail "report.html lacks '$section'"
done
chrome --window-size=1280,6000 --screenshot="$REPO/docs/report-screenshot.png" "file://$WORK/report.html" 2>/dev/null
chrome --window-size=1280,400 --screenshot="$REPO/docs/paper-table-screenshot.png" "file://$WORK/paper.html" 2>/dev/null
echo "report checks: HTML renders in $("$CHROMIUM" --version) with $svgs plots and no console errors; screenshots in docs/"
echo "report checks: PASSED"
