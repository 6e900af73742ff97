#!/usr/bin/env bash
# rstpmd benchmark (not a test), on the real binary:
#   throughput (images/s) with a burst of images dropped at once, and the daemon's own overhead
#     (decode, heatmap, JSON, PNG, I/O, polling) as the share of wall time not spent in the network;
#   drop-to-verdict latency p50/p99 with images dropped at half that throughput;
#   for 256x256 and 900x900 PNGs and camera-size 2448x2048 JPEGs and PNGs (made from the 900x900
#   bottles with ImagingBench make-image), with rstpmd's CPU use outside the network;
#   CPU use of an idle rstpmd watching 3 inboxes, from /proc/<pid>/stat over 30 s;
#   then the SIGKILL crash test with more kills (BENCH_KILLS, default 200).
# The model is the default configuration (256x256, Lite0 + Lite2 teachers). Speed does not
# depend on the weights' values, so unless BENCH_MODEL names a trained bundle, a bundle of the
# default architecture is made with 0 epochs in seconds.
# Usage: bench/daemon.sh   (BENCH_MODEL, BENCH_IMAGES per burst (40), BENCH_KILLS=0 to skip the crash run,
#                          PYTHON, RSTPM_SHARED)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SHARED="${RSTPM_SHARED:-$(cd .. && pwd)/shared}"
BOTTLE="$SHARED/datasets/mvtec_ad/bottle"
FULLRES="$SHARED/datasets/fullres/bottle"
WORK="$(mktemp -d /tmp/rstpmd-bench.XXXXXX)"
trap 'cp "$WORK"/*.log /tmp/ 2>/dev/null; rm -rf "$WORK"' EXIT

swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"
mkdir -p "$WORK/camera"
for source in "$FULLRES"/good_000.png "$FULLRES"/broken_large_000.png "$FULLRES"/contamination_000.png; do
    stem="$(basename "$source" .png)"
    "$BIN/ImagingBench" make-image "$source" "$WORK/camera/$stem.jpg" 2448 2048
    "$BIN/ImagingBench" make-image "$source" "$WORK/camera/$stem.png" 2448 2048
done
MODEL="${BENCH_MODEL:-}"
if [ -z "$MODEL" ]; then
    mkdir -p "$WORK/train"
    for i in 000 001 002 003 004 005 006 007 008 009; do cp "$BOTTLE/train/good/$i.png" "$WORK/train/"; done
    "$BIN/rstpm" train --data "$WORK/train" --out "$WORK/model" --epochs 0,0 >/dev/null 2>&1
    MODEL="$WORK/model"
fi
echo "rstpmd benchmark: model $MODEL, $(nproc) cores, $(date -u +%FT%TZ)"

"$PYTHON" - "$BIN/rstpmd" "$MODEL" "$WORK" "$BOTTLE" "$FULLRES" <<'PY'
import glob, json, os, shutil, socket, subprocess, sys, threading, time

rstpmd, model, work, bottle, fullres = sys.argv[1:6]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

def line_yaml(name, root, poll=2.0):
    folders = {f: os.path.join(root, f) for f in ("inbox", "work", "outbox", "archive", "quarantine")}
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    return (f"  - name: {name}\n" + "".join(f"    {k}: {v}\n" for k, v in folders.items())
            + f"    model: {model}\n    poll_interval_seconds: {poll}\n    settle_interval_seconds: 1\n    batch_size: 4\n")

def start(lines, tag):
    config = os.path.join(work, f"{tag}.yaml")
    with open(config, "w") as f:
        f.write("instance: bench\ndrain_timeout_seconds: 60\nlines:\n" + "".join(lines))
    notify = os.path.join(work, f"{tag}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify)
    sock.settimeout(300)
    log = open(os.path.join(work, f"{tag}.log"), "w")
    process = subprocess.Popen([rstpmd, "--config", config], stdout=log, stderr=log,
                               env=dict(os.environ, NOTIFY_SOCKET=notify))
    started = time.time()
    while b"READY=1" not in sock.recv(4096):
        pass
    ready = time.time() - started
    sock.settimeout(None)
    # Keep reading as systemd does: a full socket queue blocks sd_notify in the daemon.
    def drain():
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    threading.Thread(target=drain, daemon=True).start()
    return process, sock, ready

def stop(process, sock):
    process.terminate()
    process.wait(timeout=120)
    sock.close()

def drop(source, inbox, name):
    temporary = os.path.join(inbox, "." + name + ".part")
    shutil.copyfile(source, temporary)
    os.rename(temporary, os.path.join(inbox, name))
    return time.time()

class Watcher(threading.Thread):
    """Notes when each verdict appears in the outbox, polling every 5 ms while images are dropped."""
    def __init__(self, outbox):
        super().__init__(daemon=True)
        self.outbox, self.seen, self.running = outbox, {}, True
        self.start()

    def run(self):
        while self.running:
            now = time.time()
            for entry in os.listdir(self.outbox):
                if entry.endswith(".json") and not entry.startswith(".") and entry[:-5] not in self.seen:
                    self.seen[entry[:-5]] = now
            time.sleep(0.005)

    def wait(self, names, timeout=900):
        deadline = time.time() + timeout
        while not all(n in self.seen for n in names) and time.time() < deadline:
            time.sleep(0.01)
        return {n: self.seen[n] for n in names if n in self.seen}

def verdicts(outbox, names):
    return [json.load(open(os.path.join(outbox, n + ".json"))) for n in names]

def percentile(values, q):
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

def burst(label, sources, count):
    root = os.path.join(work, label)
    process, sock, ready_seconds = start([line_yaml("bench", root, poll=0.5)], label)
    inbox, outbox = os.path.join(root, "inbox"), os.path.join(root, "outbox")
    watcher = Watcher(outbox)
    # One warm-up image: first-call allocations are not the steady state.
    drop(sources[0], inbox, "warmup" + os.path.splitext(sources[0])[1])
    watcher.wait(["warmup" + os.path.splitext(sources[0])[1]])
    extension = os.path.splitext(sources[0])[1]
    names = [f"{label}_{i:03d}{extension}" for i in range(count)]
    cpu_before = cpu_seconds(process.pid)
    first = time.time()
    dropped = {name: drop(sources[i % len(sources)], inbox, name) for i, name in enumerate(names)}
    seen = watcher.wait(names)
    wall = max(seen.values()) - first
    cpu = cpu_seconds(process.pid) - cpu_before
    records = verdicts(outbox, names)
    def total(stage):
        return sum(r["timings_ms"].get(stage, 0) for r in records) / 1000
    infer, decode, heatmap, write = total("infer"), total("decode"), total("heatmap"), total("write")
    rate = count / wall
    print(f"{label}: {count} images in {wall:.1f} s = {rate:.2f} images/s (model loaded and READY in {ready_seconds:.1f} s; "
          f"rstpmd used {cpu / wall * 100:.0f}% of one core; load average {os.getloadavg()[0]:.1f})")
    # Overhead is the wall time not spent in preprocess + network. The heatmap and the writes run
    # on the output thread, mostly while the network runs, so their costs overlap the wall time.
    per_image = lambda seconds: f"{seconds / count * 1000:.1f}"
    print(f"  network+preprocess {infer / wall * 100:.1f}% of wall time; daemon overhead {100 - infer / wall * 100:.1f}% "
          f"= {(wall - infer) / count * 1000:.1f} ms/image; CPU outside the network about "
          f"{max(cpu - infer * os.cpu_count(), 0) / count * 1000:.1f} ms/image (CPU time less network time x {os.cpu_count()} threads)")
    print(f"  per image (ms): wall {per_image(wall)}, network+preprocess {per_image(infer)}, decode {per_image(decode)}, "
          f"heatmap render+PNG {per_image(heatmap)}, heatmap durable write {per_image(write)} (output thread, overlapped); "
          f"verdict JSON, disposal, claims and polling are not timed separately")
    # Latency: paced at half the burst throughput.
    interval = 1 / (0.5 * rate)
    paced = [f"{label}_paced_{i:03d}{extension}" for i in range(max(10, min(30, count)))]
    dropped = {}
    for i, name in enumerate(paced):
        dropped[name] = drop(sources[i % len(sources)], inbox, name)
        time.sleep(interval)
    seen = watcher.wait(paced)
    latencies = [(seen[n] - dropped[n]) * 1000 for n in paced]
    print(f"  drop-to-verdict latency at {0.5 * rate:.2f} images/s ({len(paced)} images): p50 {percentile(latencies, 0.5):.0f} ms, "
          f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms")
    watcher.running = False
    stop(process, sock)

bottle_images = sorted(glob.glob(os.path.join(bottle, "test", "*", "*.png")))
# A burst's first batch decodes and its last batch writes with nothing to overlap; longer bursts
# (BENCH_IMAGES) approach a continuously fed line's steady state.
images = int(os.environ.get("BENCH_IMAGES", "40"))
burst("mvtec_256px", bottle_images, images)
burst("fullres_900px", sorted(glob.glob(os.path.join(fullres, "*.png"))), images)
# Camera-size inputs: fewer per burst, each is 5 megapixels.
camera = os.path.join(work, "camera")
burst("camera_2448x2048_jpeg", sorted(glob.glob(os.path.join(camera, "*.jpg"))), max(8, images // 2))
burst("camera_2448x2048_png", sorted(glob.glob(os.path.join(camera, "*.png"))), max(8, images // 2))

# Idle: three inboxes at the default 2 s poll.
lines = [line_yaml(f"idle{i}", os.path.join(work, f"idle{i}")) for i in range(3)]
process, sock, _ = start(lines, "idle")
time.sleep(5)
before, started = cpu_seconds(process.pid), time.time()
time.sleep(30)
used, elapsed = cpu_seconds(process.pid) - before, time.time() - started
rss = [l for l in open(f"/proc/{process.pid}/status") if l.startswith("VmRSS")][0].split()[1]
print(f"idle with 3 inboxes: {used:.2f} CPU s in {elapsed:.0f} s = {used / elapsed * 100:.2f}% of one core; RSS {int(rss) // 1024} MiB")
stop(process, sock)
PY

KILLS="${BENCH_KILLS:-200}"
if [ "$KILLS" -gt 0 ]; then
    echo "crash run: $KILLS SIGKILLs"
    RSTPM_CRASH_KILLS="$KILLS" swift test -c release --filter 'InspectionDaemonTests.CrashTests' 2>&1 | grep -E "crash test:|error|passed|failed" | tail -5
fi
