"""`python -m edge.listen`: hear keywords from the microphone (or a file, or stdin) and print each one.

    python -m edge.listen                      # default microphone, shipped model
    python -m edge.listen --wav clip.wav --json
    python -m edge.listen --model models/kws.onnx --model lights.onnx   # the shipped commands and your own words
    arecord -f S16_LE -r 16000 -c 1 -t raw | python -m edge.listen --stdin
    python -m edge.listen @options.txt         # arguments from a file, one per line (the service uses this)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.cli import (
    Parser,
    add_device_arguments,
    add_model_arguments,
    add_mqtt_arguments,
    check_mqtt_arguments,
    model_paths,
    mqtt_publisher,
    printable,
)
from edge.detect import Detection, Step
from edge.errors import EdgeError

CHUNK_MS = 100
HOOK_WAIT_S = 2.0  # at the end, how long --on-detect programs still running may take to finish


log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the SIGTERM handler to unwind like Ctrl+C does."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m edge.listen", description="Offline keyword spotting: hear the model's commands "
               "in the microphone, a file or stdin, and print each one as an event.",
               fromfile_prefix_chars="@",
               epilog="@FILE reads arguments from FILE, one per line, spaces kept as they are. Exit codes: 0 done "
                      "(Ctrl+C or SIGTERM included), 2 a mistake in the input, said in one line.")
    add_model_arguments(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--wav", type=Path, metavar="FILE",
                        help="process a sound file (WAV, FLAC or OGG; any rate, mono or stereo) instead of the "
                             "microphone (default: the microphone)")
    source.add_argument("--stdin", action="store_true",
                        help="read raw mono PCM from stdin, no header (see --stdin-format; default: the microphone)")
    p.add_argument("--stdin-rate", type=int, default=None, metavar="HZ",
                   help="with --stdin: its sample rate (default: the model's, 16000)")
    p.add_argument("--stdin-format", choices=("s16le", "f32le"), default="s16le",
                   help="with --stdin: s16le (signed 16-bit) or f32le (32-bit float) samples, little-endian "
                        "(default: %(default)s)")
    p.add_argument("--realtime", action="store_true",
                   help="with --wav: pace the file at real-time speed (default: as fast as it is heard)")
    add_device_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per event per line: label, score (how sure, 0..1: the peak of its "
                        "smoothed score), time (stream seconds), wall_time, and with several --model the model "
                        "that heard it (default: a table-like text line, with the model's name after the score "
                        "where there are several)")
    p.add_argument("--step-scores", action="store_true",
                   help="with --json: also a line per model step (every 20 ms for the shipped model) with each "
                        "keyword's smoothed score, {\"time\": 1.24, \"scores\": {\"yes\": 0.031, ...}}, before "
                        "that step's events; one --model only (default: events only)")
    p.add_argument("--meter", action="store_true",
                   help="draw each keyword's smoothed score against its threshold on stderr as you speak, to "
                        "choose a --threshold (redrawn in place on a terminal, a line per 0.1 s elsewhere); one "
                        "--model only (default: no meter)")
    p.add_argument("--record", type=Path, default=None, metavar="OUT.wav",
                   help="also save the audio as heard (16 kHz mono 16-bit WAV), to check a microphone set-up "
                        "(default: nothing saved)")
    p.add_argument("--window-only", action="store_true",
                   help="run the window model on the last second at every step instead of the streaming model "
                        "(much slower; for comparison)")
    p.add_argument("--on-detect", metavar="COMMAND", default=None,
                   help="run this program for every detection, e.g. \"/home/pi/bin/lights toggle\"; it runs "
                        "without a shell and gets the event in its environment (KWS_LABEL, KWS_SCORE, KWS_TIME, "
                        "and KWS_MODEL with several --model), never on its command line; its output goes to "
                        "stderr (default: none)")
    add_mqtt_arguments(p)
    return p


def _paced(chunks: Iterator[np.ndarray], rate: int) -> Iterator[np.ndarray]:
    start, sent = time.monotonic(), 0
    for chunk in chunks:
        sent += len(chunk)
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        yield chunk


def _emit(detection: Detection, as_json: bool) -> None:
    if as_json:  # json escapes control characters itself
        line = json.dumps(detection.to_dict())
    else:
        line = f"{detection.time_s:8.2f} s  {printable(detection.label):<10} {detection.score:.2f}"
        if detection.model is not None:  # several models listen: say which one heard it
            line += f"  {printable(detection.model)}"
    print(line, flush=True)


class _Hook:
    """--on-detect: a fixed argument list started for each detection, without a shell and without waiting.

    The event travels in environment variables only, so no label text can ever become part of a command
    line. The program's output goes to stderr, never into the events on stdout. Finished runs are reaped
    as audio comes; one that fails or cannot start is reported and listening goes on."""

    def __init__(self, command: str | None):
        self._argv: list[str] = []
        self._running: list[subprocess.Popen] = []
        if command is None:
            return
        try:
            self._argv = shlex.split(command)
        except ValueError as error:
            raise EdgeError(f"--on-detect: cannot split {command!r} into arguments ({error})") from None
        if not self._argv or shutil.which(self._argv[0]) is None:
            raise EdgeError(f"--on-detect: program {self._argv[0] if self._argv else command!r} not found "
                            "or not executable; give a path or a program on PATH")

    def __call__(self, detection: Detection) -> None:
        if not self._argv:
            return
        self.reap()
        env = {**os.environ, "KWS_LABEL": printable(detection.label), "KWS_SCORE": f"{detection.score:.4f}",
               "KWS_TIME": f"{detection.time_s:.3f}",
               **({} if detection.model is None else {"KWS_MODEL": printable(detection.model)})}
        try:
            self._running.append(subprocess.Popen(self._argv, env=env, stdin=subprocess.DEVNULL,
                                                  stdout=sys.__stderr__.fileno(), shell=False))
        except (OSError, ValueError) as error:
            log.warning("--on-detect: could not start %s: %s", self._argv[0], error)

    def reap(self, wait_s: float = 0.0) -> None:
        """Collect finished runs (no zombies), waiting up to `wait_s` for those still running; report those
        that failed."""
        deadline = time.monotonic() + wait_s
        still = []
        for process in self._running:
            try:
                code = process.wait(max(0.0, deadline - time.monotonic())) if wait_s else process.poll()
            except subprocess.TimeoutExpired:
                code = None
            if code is None:
                still.append(process)
            elif code != 0:
                log.warning("--on-detect: %s exited with code %d", self._argv[0], code)
        self._running = still


class _Recorder:
    """--record: writes to a temporary name and renames it when listening ends, so no half file remains."""

    def __init__(self, path: Path | None, rate: int):
        self._path, self._file = path, None
        if path is not None:
            import soundfile as sf

            if path.is_dir():
                raise EdgeError(f"--record {path} is a folder; give a file name, e.g. {path / 'heard.wav'}")
            if not path.parent.is_dir():
                raise EdgeError(f"--record {path}: folder {path.parent} does not exist; create it or record elsewhere")
            self._tmp = path.with_name(f".{path.name}.part")
            try:
                self._file = sf.SoundFile(str(self._tmp), "w", samplerate=rate, channels=1, subtype="PCM_16",
                                          format="WAV")
            except (sf.LibsndfileError, OSError) as error:
                raise EdgeError(f"--record {path}: cannot write there ({error}); check the folder's permissions "
                                "and free space") from None

    def write(self, chunk: np.ndarray) -> None:
        if self._file is not None:
            self._file.write(np.clip(chunk, -1.0, 1.0))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._tmp.replace(self._path)
            self._file = None


def _meter(args, recognizer):
    """The --meter display for this model's keywords and thresholds, or None."""
    if not args.meter:
        return None
    from edge.meter import Meter

    keywords = [label for label in recognizer.labels if not label.startswith("_")]
    return Meter({label: recognizer.settings.threshold_of(label) for label in keywords},
                 {label: printable(label) for label in keywords})


def _listen(args, recognizer, chunks: Iterator[np.ndarray], flush: bool, mqtt=None) -> tuple[float, int]:
    """Runs the recognizer over the chunks; returns (seconds of audio heard, events)."""
    hook = _Hook(args.on_detect)
    recorder = _Recorder(args.record, recognizer.sample_rate)
    meter = _meter(args, recognizer)
    samples = events = 0

    def deliver(detections: list[Detection]) -> int:
        if detections and meter is not None:
            meter.clear()
        for detection in detections:
            _emit(detection, args.json)
            hook(detection)
            if mqtt is not None:
                mqtt.publish(detection)
        return len(detections)

    def hear(chunk: np.ndarray) -> int:
        if not args.step_scores and meter is None:  # events only: what several models give too
            return deliver(recognizer.process(chunk))
        steps: list[Step] = recognizer.steps(chunk)
        fired = 0
        for step in steps:
            if args.step_scores:
                print(json.dumps(step.to_dict()), flush=True)
            fired += deliver(list(step.detections))
        if meter is not None:
            meter.show(steps)
        return fired

    try:
        for chunk in chunks:
            recorder.write(chunk)
            samples += len(chunk)
            events += hear(chunk)
            hook.reap()
        if flush:
            events += deliver(recognizer.finish())
    finally:
        recorder.close()
        if meter is not None:
            meter.clear()
        hook.reap(wait_s=HOOK_WAIT_S)
    return samples / recognizer.sample_rate, events


def _summary(seconds: float, events: int) -> None:
    """The end of a file or stdin, on stderr (stdout carries only events): so that silence is not mistaken
    for a run that heard nothing because it failed."""
    heard = "no keyword heard" if events == 0 else f"{events} event(s)"
    print(f"edge.listen: {seconds:.1f} s of audio processed, {heard}", file=sys.stderr)


def _listen_to_microphone(args, recognizer, mqtt) -> None:
    from edge.sources import Microphone

    with Microphone(recognizer.sample_rate, args.device) as microphone:
        print(f"listening on {printable(microphone.device_name)} ({microphone.device_rate} Hz) for "
              f"{printable(', '.join(l for l in recognizer.labels if not l.startswith('_')))}; Ctrl+C stops",
              file=sys.stderr, flush=True)
        try:
            _listen(args, recognizer, microphone.chunks(on_reopen=recognizer.skip), False, mqtt)
        finally:
            if microphone.overflows:
                print(f"{microphone.overflows} input overflow(s): {microphone.lost_s:.2f} s of audio lost "
                      "in all (counted in stream time)", file=sys.stderr)
            if microphone.interruptions:
                print(f"the microphone was lost and reopened {microphone.interruptions} time(s)", file=sys.stderr)


def _recognizer(args):
    """A Recognizer for one --model; a MultiRecognizer (the same calls, no per-step scores) for several."""
    from edge.multi import MultiRecognizer
    from edge.runtime import Recognizer

    models = model_paths(args)
    if len(models) == 1:
        return Recognizer.from_onnx(models[0], threshold=args.threshold, streaming=not args.window_only,
                                    speeds=args.speeds)
    for flag, given in (("--step-scores", args.step_scores), ("--meter", args.meter)):
        if given:
            raise EdgeError(f"{flag} shows one model's scores; give one --model with it, not {len(models)}")
    return MultiRecognizer.from_onnx(models, threshold=args.threshold, streaming=not args.window_only,
                                     speeds=args.speeds)


def run(args) -> int:
    from edge.sources import file_chunks, list_devices, stdin_chunks

    if args.list_devices:
        print(list_devices())
        return 0
    if not args.stdin and (args.stdin_rate is not None or args.stdin_format != "s16le"):
        raise EdgeError("--stdin-rate and --stdin-format describe --stdin input; add --stdin")
    if args.step_scores and not args.json:
        raise EdgeError("--step-scores adds lines to the --json output; add --json")
    source = "--wav" if args.wav is not None else "--stdin" if args.stdin else None
    if args.device is not None and source is not None:
        raise EdgeError(f"--device chooses a microphone; {source} reads no microphone: leave out one of the two")
    if args.realtime and args.wav is None:
        raise EdgeError("--realtime paces a --wav file; add --wav or leave --realtime out")
    check_mqtt_arguments(args)
    recognizer = _recognizer(args)
    rate = recognizer.sample_rate
    chunk = rate * CHUNK_MS // 1000
    mqtt = mqtt_publisher(args)
    try:
        if args.wav is not None:
            chunks = file_chunks(args.wav, rate, chunk)
            _summary(*_listen(args, recognizer, _paced(chunks, rate) if args.realtime else chunks, True, mqtt))
        elif args.stdin:
            chunks = stdin_chunks(rate, chunk, source_rate=args.stdin_rate, sample_format=args.stdin_format)
            _summary(*_listen(args, recognizer, chunks, True, mqtt))
        else:
            _listen_to_microphone(args, recognizer, mqtt)
    finally:
        if mqtt is not None:
            mqtt.close()
    if recognizer.bad_chunks:
        print(f"{recognizer.bad_chunks} chunk(s) with NaN/inf samples were heard as silence", file=sys.stderr)
    return 0


def _raise_stop(signum, frame):
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a mistake argparse found (said in one line)
        return stop.code
    logging.basicConfig(level=logging.WARNING, format="edge.listen: %(levelname)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return run(args)
    except EdgeError as error:
        print(f"edge.listen: error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Stop):
        return 0
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
