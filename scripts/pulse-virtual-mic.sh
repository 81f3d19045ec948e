#!/usr/bin/env bash
# Start a PulseAudio server whose default source is the monitor of a null sink: a virtual
# microphone. Whatever is played into the sink (`pacat --device=wavlm_vmic FILE`) can be
# recorded from the monitor through ALSA's "pulse" device (libasound2-plugins), which is
# how sounddevice/PortAudio sees it. No sound card is needed: the null sink is paced by
# the system clock, so capture runs at real time (ALSA's "null" device does not pace).
#
# Idempotent: safe to run again while the server runs (it only loads the sink if missing).
# Works as root (CI runs as root): the server runs in per-user mode for root.
#
# Usage: scripts/pulse-virtual-mic.sh [--exit-idle-time SECONDS]
#   --exit-idle-time  seconds the server waits, with no client connected, before it
#                     exits by itself (default 300; -1: never). A server that already
#                     runs keeps its own setting.
# Environment: WAVLM_VMIC_SINK  sink name (default wavlm_vmic)
#              WAVLM_VMIC_RATE  sink rate in Hz (default 48000), 2 channels, float32
# Prints the source to record from (e.g. wavlm_vmic.monitor) on stdout.
set -euo pipefail

idle=300
while [ $# -gt 0 ]; do
    case "$1" in
        --exit-idle-time) idle="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "pulse-virtual-mic.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

sink="${WAVLM_VMIC_SINK:-wavlm_vmic}"
rate="${WAVLM_VMIC_RATE:-48000}"

for tool in pulseaudio pactl pacat flock; do
    if ! command -v "$tool" >/dev/null; then
        echo "pulse-virtual-mic.sh: $tool not found: apt-get install pulseaudio pulseaudio-utils libasound2-plugins" >&2
        exit 1
    fi
done

# A set but missing XDG_RUNTIME_DIR (common in containers) makes the server fail to start.
if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ ! -d "$XDG_RUNTIME_DIR" ]; then
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

# Serialise concurrent callers (two test sessions starting at once).
exec 9>"${TMPDIR:-/tmp}/wavlm-live-pulse-$(id -u).lock"
flock -w 30 9

if ! pactl info >/dev/null 2>&1; then
    # -n: no default.pa (it probes sound cards we do not have); load only what we need.
    # speex-float-5 resamples between client and sink rates transparently enough for a
    # test signal to come back with a correlation of 0.99999; PulseAudio's soxr-vhq
    # left a sub-sample delay that lowered it to 0.99.
    pulseaudio --daemonize=yes --system=false -n \
        --exit-idle-time="$idle" --realtime=false --high-priority=false \
        --resample-method=speex-float-5 \
        --log-target="file:${TMPDIR:-/tmp}/wavlm-live-pulse-$(id -u).log" \
        --load="module-native-protocol-unix" 2>/dev/null \
        || { echo "pulse-virtual-mic.sh: pulseaudio failed to start (see ${TMPDIR:-/tmp}/wavlm-live-pulse-$(id -u).log)" >&2; exit 1; }
    for _ in $(seq 100); do
        pactl info >/dev/null 2>&1 && break
        sleep 0.1
    done
    pactl info >/dev/null 2>&1 || { echo "pulse-virtual-mic.sh: pulseaudio started but does not answer" >&2; exit 1; }
fi

if ! pactl list short sinks | cut -f2 | grep -qx "$sink"; then
    pactl load-module module-null-sink sink_name="$sink" rate="$rate" channels=2 \
        format=float32le sink_properties=device.description="wavlm-live_virtual_microphone" >/dev/null
fi
pactl set-default-sink "$sink"
pactl set-default-source "$sink.monitor"
echo "$sink.monitor"
