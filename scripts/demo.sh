#!/usr/bin/env bash
# The main job: set up, compose the demo clip from real face photos, enrol two people, then
# track the clip and the real multi-face street clip; prints the events, writes annotated videos
# to out/; then groups the street clip's faces by person (find-faces, crops in out/street_faces/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
FT=.venv/bin/facetrack
mkdir -p out
rm -rf out/demo.lance
$PY demo/compose.py out/demo.mp4 out/demo_gt.json
for person in John_Salley John_Savage; do
  $FT enroll --db out/demo.lance --name "${person/_/ }" $(ls demo/faces/$person/*.jpg | sort | head -n 3)
done
$FT persons --db out/demo.lance
echo "== tracking out/demo.mp4 (2 enrolled people, 1 stranger, one person leaves and returns)" >&2
$FT track --db out/demo.lance --source out/demo.mp4 --annotated out/demo_annotated.mp4 --no-progress
SHARED_CLIP=${FACETRACK_SHARED:-../shared}/data/facenet_pytorch/examples/video.mp4
if [ -f "$SHARED_CLIP" ]; then
  echo "== tracking $SHARED_CLIP (real street footage, nobody enrolled)" >&2
  $FT track --db out/demo.lance --source "$SHARED_CLIP" --annotated out/street_annotated.mp4 \
    --events out/street_events.jsonl --no-progress
  tail -n 1 out/street_events.jsonl
  echo "== find-faces on the street clip: best crops per track, grouped by person" >&2
  rm -rf out/street_faces
  $FT find-faces "$SHARED_CLIP" --db out/demo.lance --clusters --crops out/street_faces \
    --json out/street_faces.json --no-embeddings --no-progress
fi
echo "annotated videos: out/demo_annotated.mp4 out/street_annotated.mp4; face crops: out/street_faces/" >&2
