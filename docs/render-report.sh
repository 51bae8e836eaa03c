#!/usr/bin/env bash
# Render the Mermaid charts of a review report as GitHub shows them, in its light and dark
# themes, to check that both lines and the legend colours read well:
#   docs/render-report.sh REPORT.md OUT_DIR     writes OUT_DIR/chart-N-light.png, -dark.png
# Needs mermaid-cli and a Chromium (Debian's package is enough; no browser download):
#   apt-get install -y chromium
#   PUPPETEER_SKIP_DOWNLOAD=1 npm install -g @mermaid-js/mermaid-cli
# CHROMIUM overrides the browser path (default /usr/bin/chromium). Not part of CI.
set -euo pipefail
report="${1:?usage: docs/render-report.sh REPORT.md OUT_DIR}"
out="${2:?usage: docs/render-report.sh REPORT.md OUT_DIR}"
command -v mmdc >/dev/null || { echo "render-report: mmdc not found (see the header)" >&2; exit 2; }
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/puppeteer.json" <<JSON
{"executablePath": "${CHROMIUM:-/usr/bin/chromium}",
 "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
JSON
# one .mmd file per ```mermaid block, in report order
awk -v dir="$work" '/^```mermaid$/ {n++; on=1; next} /^```$/ {on=0} on {print > (dir "/chart-" n ".mmd")}' "$report"
shopt -s nullglob
charts=("$work"/chart-*.mmd)
[ ${#charts[@]} -gt 0 ] || { echo "render-report: no mermaid block in $report" >&2; exit 1; }
for chart in "${charts[@]}"; do
  name="$(basename "$chart" .mmd)"
  # GitHub's light page is white; its dark page is #0d1117
  mmdc -q -p "$work/puppeteer.json" -i "$chart" -o "$out/$name-light.png" -t default -b white
  mmdc -q -p "$work/puppeteer.json" -i "$chart" -o "$out/$name-dark.png" -t dark -b '#0d1117'
  echo "render-report: $out/$name-light.png, $out/$name-dark.png"
done
