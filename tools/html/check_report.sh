#!/usr/bin/env bash
# Renders `qconv explain --html` reports in headless Chromium and checks them.
#
#   tools/html/check_report.sh [OUT_DIR]
#
# For the forum example and a golden case with hundreds of differing elements it writes the HTML
# report, the DOM as Chromium parsed it and a PNG screenshot to OUT_DIR (default
# target/html-check), then checks that the page loaded without network access, that every
# heatmap and the histogram are present in the rendered DOM, and that the screenshot is not blank.
# Needs Chromium (Debian: apt-get install chromium) and Python 3; not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p "${1:-target/html-check}"
out=$(realpath "${1:-target/html-check}")
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $chromium ]] || { echo "no Chromium found (apt-get install chromium)"; exit 2; }
cargo build --release --quiet
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$out/profile" --window-size=1280,1800)

check() {  # name layer engines expected_maps
  local name=$1 layer=$2 engines=$3 maps=$4
  ./target/release/qconv explain "$layer" --engines "$engines" --html "$out/$name.html" \
      --format json > "$out/$name.json"
  if grep -Eq '<script|src=|href=' "$out/$name.html"; then
    echo "$name: the report references external resources or scripts"; exit 1
  fi
  "$chromium" "${flags[@]}" --dump-dom "file://$out/$name.html" > "$out/$name.dom.html" 2>/dev/null
  "$chromium" "${flags[@]}" --screenshot="$out/$name.png" "file://$out/$name.html" 2>/dev/null
  python3 - "$out/$name" "$maps" <<'PY'
import json, struct, sys, zlib
base, maps = sys.argv[1], int(sys.argv[2])
dom = open(base + ".dom.html").read()
x = json.load(open(base + ".json"))
found = dom.count('class="map"')
assert found == maps, f"{base}: {found} heatmaps, expected {maps}"
assert "histogram of difference sizes" in dom or x["differing_elements"] == 0, f"{base}: no histogram"
rows = dom.count("<tr>") - 2  # two header rows (causes, elements)
assert rows >= min(x["differing_elements"], 20000), f"{base}: {rows} table rows"
# Decode the PNG and count non-white pixels: a blank or failed render has almost none.
data = open(base + ".png", "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width, height = 8, b"", 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        width, height, depth, color = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and color in (2, 6), f"unexpected PNG format {depth} {color}"
        bpp = 3 if color == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = width * bpp
inked, prev = 0, bytearray(stride)
for y in range(height):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    inked += sum(1 for i in range(0, stride, bpp) if min(line[i:i + 3]) < 200)
    prev = line
share = inked / (width * height)
assert share > 0.01, f"{base}: the screenshot is almost blank ({share:.4f} inked)"
print(f"{base}: {maps} heatmaps, {rows} rows, {x['differing_elements']} differing elements, "
      f"{width}x{height} screenshot, {share:.1%} inked")
PY
}

check forum examples/forum-5x5.toml float-path,fbgemm 1
check saturating 'tests/data/golden/pytorch-saturating.jsonl.gz#pytorch-saturating-0031' exact,fbgemm 10
echo "reports, DOM dumps and screenshots in $out"
