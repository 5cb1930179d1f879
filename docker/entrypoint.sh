#!/bin/sh
# The image's entry point: `imgsim ARGS` with /data as the image folder and /work as the work
# folder (the settings in $IMGSIM_CONTAINER_CONFIG). Before `serve` it brings the index up to
# date with /data, training a model first when /work has none, so that one `docker run` with a
# folder of photos ends with a running search page. IMGSIM_AUTO_INDEX=0 skips that step;
# IMGSIM_TRAIN_ARGS adds flags to that first training (e.g. "--time-budget-min 3").
set -eu

# `docker run IMAGE imgsim train` works as well as `docker run IMAGE train`.
if [ "${1:-}" = imgsim ]; then
    shift
fi
config="--config=$IMGSIM_CONTAINER_CONFIG"

if [ "${1:-}" = serve ] && [ "${IMGSIM_AUTO_INDEX:-1}" != 0 ]; then
    model=$(python3 -c 'from imgsim.core.config import MODEL_FILE; print(MODEL_FILE)')
    if [ ! -f "$IMGSIM_WORKDIR/$model" ]; then
        echo "imgsim: no model in $IMGSIM_WORKDIR yet: training one on /data first" >&2
        # shellcheck disable=SC2086  # IMGSIM_TRAIN_ARGS is a list of flags
        imgsim "$config" train --output-dir "$IMGSIM_WORKDIR" ${IMGSIM_TRAIN_ARGS:-} || {
            echo "imgsim: training failed; mount a folder of images named by category at" \
                "/data, e.g. docker run -v \"\$PWD/photos:/data\" -p 127.0.0.1:5000:5000 imgsim" >&2
            exit 1
        }
    fi
    imgsim "$config" index --update --workdir "$IMGSIM_WORKDIR"
fi
exec imgsim "$config" "$@"
