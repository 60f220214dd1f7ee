#!/usr/bin/env bash
# iobench_vs_fio.sh: ebb's NVMe tier against fio on the same directory, same block size and
# queue depth, in the same run, rounds interleaved (fio write, fio read, ebb iobench) so that
# both see the same machine; prints the median of each and the ratios of the medians.
#
#   tools/iobench_vs_fio.sh EBB DIR [SIZE] [BS] [QD] [ROUNDS]
#     EBB     the ebb binary (build/bin/ebb)
#     DIR     the directory to test (a file system that takes O_DIRECT)
#     SIZE    bytes per run as both read it: 1G, 512M (fio takes 1MiB as 10^6) (default 1G)
#     BS, QD  block size (e.g. 1M) and queue depth (default 1M and 16)
#     ROUNDS  default 3
# Needs fio (not installed in CI). ebb runs with checksums on (CRC32C per block); EBB_FLAGS adds
# iobench flags (e.g. EBB_FLAGS=--copy).
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,12p' "$0"; exit 2; }
EBB=$1 DIR=$2 SIZE=${3:-1G} BS=${4:-1M} QD=${5:-16} ROUNDS=${6:-3}
command -v fio >/dev/null || { echo "iobench_vs_fio: fio is not installed" >&2; exit 2; }
FIO_FILE="$DIR/ebb-fio-$$.dat"
trap 'rm -f "$FIO_FILE"' EXIT

fio_gbps() {  # rw
  fio --name=ebb --filename="$FIO_FILE" --ioengine=io_uring --direct=1 --bs="$BS" \
    --iodepth="$QD" --rw="$1" --size="$SIZE" --numjobs=1 --output-format=json |
    python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; \
print(j['$1']['bw_bytes']/1e9)"
}

echo "fio command: fio --name=ebb --filename=$FIO_FILE --ioengine=io_uring --direct=1" \
  "--bs=$BS --iodepth=$QD --rw=write|read --size=$SIZE --numjobs=1 --output-format=json"
echo "ebb command: $EBB iobench --dir $DIR --size $SIZE --bs $BS --qd $QD --json ${EBB_FLAGS:-}"
results=()
for ((r = 1; r <= ROUNDS; ++r)); do
  fw=$(fio_gbps write)
  fr=$(fio_gbps read)
  rm -f "$FIO_FILE"
  # shellcheck disable=SC2086  # EBB_FLAGS is a list of flags
  ebb_json=$("$EBB" iobench --dir "$DIR" --size "$SIZE" --bs "$BS" --qd "$QD" --json ${EBB_FLAGS:-})
  results+=("$fw $fr $ebb_json")
  echo "round $r: fio write $fw GB/s, fio read $fr GB/s, ebb $ebb_json"
done
printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
fw, fr, ew, er = [], [], [], []
for line in sys.stdin:
    a, b, rest = line.split(" ", 2)
    e = json.loads(rest)
    fw.append(float(a)); fr.append(float(b)); ew.append(e["write_gbps"]); er.append(e["read_gbps"])
m = statistics.median
print("median of %d: write fio %.3f GB/s, ebb %.3f GB/s (%.0f%%); read fio %.3f GB/s, ebb %.3f GB/s (%.0f%%)"
      % (len(fw), m(fw), m(ew), 100 * m(ew) / m(fw), m(fr), m(er), 100 * m(er) / m(fr)))
print(json.dumps({"fio_write_gbps": m(fw), "ebb_write_gbps": m(ew), "write_ratio": m(ew) / m(fw),
                  "fio_read_gbps": m(fr), "ebb_read_gbps": m(er), "read_ratio": m(er) / m(fr)}))
'
