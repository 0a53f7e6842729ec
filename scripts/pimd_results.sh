#!/usr/bin/env bash
# The nuclear-quantum-effects study of docs/results.md for one model, every run in one folder:
# isolated NH3 converging in P, the 64-molecule liquid (classical, PILE-L P = 8 twice, i-PI P = 8
# with both splittings, TRPMD P = 16 and 32), its spectra and g(r), the harmonic anchor and the
# 512-atom step times. A step whose summary already exists is skipped, so a stopped run resumes.
#
#   scripts/pimd_results.sh MODEL OUT        e.g. scripts/pimd_results.sh models/legato-nqe runs/pimd
#
# Wall time on the 2-core CPU of docs/results.md: about 2 hours.
set -euo pipefail
MODEL=${1:?usage: scripts/pimd_results.sh MODEL OUT}
OUT=${2:?usage: scripts/pimd_results.sh MODEL OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
S=$HERE/../configs/ipi/ammonia_64.extxyz
mkdir -p "$OUT"
step() {  # step SUMMARY COMMAND...: run COMMAND unless SUMMARY exists
    local done=$1; shift
    if [[ -s $done ]]; then echo "== have $done"; return; fi
    echo "== $*"
    "$@"
}
pimd() { legato pimd --model "$MODEL" --no-progress "$@"; }

step "$OUT/nh3_convergence.json" pimd --molecule NH3 --beads 1 2 4 8 16 32 --temperature 200 --dt 0.5 \
    --equilibrate 2000 --steps 20000 --tau 20 --health warn --json "$OUT/nh3_convergence.json"
step "$OUT/liquid_classical.json" pimd --structure "$S" --beads 1 --trpmd --equilibrate 2000 --steps 12000 \
    --log-every 4 --out "$OUT/classical.extxyz" --json "$OUT/liquid_classical.json"
step "$OUT/liquid_native_p8.json" pimd --structure "$S" --beads 8 --tau 100 --equilibrate 1000 --steps 3000 \
    --json "$OUT/liquid_native_p8.json"
step "$OUT/liquid_native_p8_seed1.json" pimd --structure "$S" --beads 8 --tau 100 --equilibrate 1000 --steps 3000 \
    --seed 1 --json "$OUT/liquid_native_p8_seed1.json"
step "$OUT/liquid_trpmd_p16.json" pimd --structure "$S" --beads 16 --trpmd --equilibrate 500 --steps 2000 \
    --log-every 4 --out "$OUT/trpmd16.extxyz" --beads-out "$OUT/trpmd16_beads.extxyz" --beads-every 40 --chunk 500 \
    --json "$OUT/liquid_trpmd_p16.json"
step "$OUT/liquid_trpmd_p32.json" pimd --structure "$S" --beads 32 --trpmd --equilibrate 500 --steps 1000 \
    --log-every 4 --out "$OUT/trpmd32.extxyz" --chunk 250 --json "$OUT/liquid_trpmd_p32.json"
step "$OUT/liquid_ipi_p8_baoab.json" python "$HERE/ipi_ammonia.py" "$OUT/ipi8_baoab" 4000 8 --model "$MODEL" \
    --splitting baoab --json "$OUT/liquid_ipi_p8_baoab.json"
step "$OUT/liquid_ipi_p8.json" python "$HERE/ipi_ammonia.py" "$OUT/ipi8" 4000 8 --model "$MODEL" --json "$OUT/liquid_ipi_p8.json"
step "$OUT/vdos.json" legato spectrum "$OUT/classical.extxyz" "$OUT/trpmd16.extxyz" --labels classical "TRPMD P=16" \
    --max-lag-fs 500 --plot "$OUT/vdos_classical_trpmd16.png" --json "$OUT/vdos.json"
step "$OUT/vdos_p16_p32.json" legato spectrum "$OUT/classical.extxyz" "$OUT/trpmd16.extxyz" "$OUT/trpmd32.extxyz" \
    --labels classical "TRPMD P=16" "TRPMD P=32" --max-lag-fs 250 --species H \
    --plot "$OUT/vdos_classical_trpmd16_32.png" --json "$OUT/vdos_p16_p32.json"
step "$OUT/gr_trpmd16_beads_vs_classical.json" legato analyze "$OUT/trpmd16_beads.extxyz" --rdf N-H H-H N-N \
    --rmax 4.3 --bins 215 --reference "$OUT/classical.extxyz" --reference-frames 500 \
    --plot "$OUT/gr_trpmd16_beads_vs_classical.png" --json "$OUT/gr_trpmd16_beads_vs_classical.json"
step "$OUT/nh3_frequencies.json" python "$HERE/nh3_frequencies.py" --models "$MODEL" --json "$OUT/nh3_frequencies.json"
for P in 8 32; do
    step "$OUT/timing_512_p$P.json" pimd --ammonia 128 --beads $P --steps 30 --log-every 10 --chunk 10 \
        --json "$OUT/timing_512_p$P.json"
done
echo "== all summaries in $OUT"
