# Sourced by the device scripts. `pack FOLDER NAME`: drop checkpoints (*.safetensors) and
# TensorBoard folders from FOLDER (a child of $OUT), pack it as $OUT/NAME.tgz and remove it,
# since the device returns at most 8 files from $OUT.
pack() {
  find "$1" -name "*.safetensors" -delete; find "$1" -type d -name tb -prune -exec rm -rf {} +
  tar -C "$OUT" -czf "/tmp/$2.tgz" "$(basename "$1")" && mv "/tmp/$2.tgz" "$OUT/" && rm -rf "$1"
}
# `el`: seconds since T0 (set by the script, else when this file was sourced); `row FILE`: the
# table rows of a scan.py / bench scan log.
T0=${T0:-$(date +%s)}
el() { echo $(( $(date +%s) - T0 )); }
row() { grep -E "^ +[0-9]+ " "$1" | cut -c1-100; }
