"""Where audio comes from: a microphone, a sound file, or raw PCM on stdin.

Each source yields float32 mono chunks [samples] at the rate asked for, resampling whatever the device or
file gives (44.1 kHz, 48 kHz, ...) with soxr, which keeps state across chunks so no seams are audible.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from edge.errors import EdgeError, Throttled

log = logging.getLogger(__name__)


class Resampler:
    """Streaming resampler to `rate`; a pass-through when the rates already match."""

    def __init__(self, source_rate: int, rate: int):
        self._stream = None
        if source_rate != rate:
            import soxr

            self._stream = soxr.ResampleStream(source_rate, rate, 1, dtype="float32")

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        return audio if self._stream is None else self._stream.resample_chunk(audio, last=last)


def _mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32, copy=False)


def wav_truncation(path: str | Path) -> str | None:
    """What is missing from a WAV file cut short (its data chunk promises more bytes than follow), or None.
    libsndfile would quietly read the part that is there."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            length = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                remaining = size - f.tell()
                # 0 and 0xFFFFFFFF are what writers to a pipe put there: the length was not known
                if 0 < length < 0xFFFFFFFF and length > remaining:
                    return f"its header promises {length} bytes of audio but only {remaining} follow"
                return None
            f.seek(length + (length & 1), 1)


def file_chunks(path: str | Path, rate: int, chunk_samples: int) -> Iterator[np.ndarray]:
    """A WAV/FLAC/OGG file as chunks at `rate`; stereo is mixed down (with a notice)."""
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise EdgeError(f"{path} is a folder, not an audio file; give a WAV, FLAC or OGG file")
    if not path.exists():
        raise EdgeError(f"audio file {path} not found")
    if not path.is_file():  # /dev/null, a terminal, a pipe: libsndfile cannot read a sound file from these
        raise EdgeError(f"{path} is not a regular file; give a WAV, FLAC or OGG file (raw PCM from a pipe: --stdin)")
    if path.stat().st_size == 0:
        raise EdgeError(f"audio file {path} is empty (0 bytes); record or copy it again")
    try:
        info = sf.info(str(path))
        if info.frames == 0:
            raise EdgeError(f"audio file {path} is empty")
        truncated = wav_truncation(path)
        if truncated:
            raise EdgeError(f"audio file {path} is truncated ({truncated}); copy or record it again")
        blocks = sf.blocks(str(path), blocksize=chunk_samples, dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        raise EdgeError(f"cannot read audio file {path}: {error}") from None
    if info.channels > 1:
        log.warning("%s has %d channels; mixing them down to mono", path, info.channels)
    resample = Resampler(info.samplerate, rate)
    try:
        for block in blocks:
            yield resample(_mono(block))
    except sf.LibsndfileError as error:
        raise EdgeError(f"audio file {path} is damaged: {error}") from None
    tail = resample(np.zeros(0, np.float32), last=True)
    if len(tail):
        yield tail


def pcm_to_float(data: bytes, dtype, channels: int = 1) -> np.ndarray:
    """Interleaved little-endian PCM bytes (signed or unsigned integers, or floats) -> float32 mono in
    [-1, 1]; channels are mixed down."""
    dtype = np.dtype(dtype).newbyteorder("<")
    if channels < 1 or len(data) % (dtype.itemsize * channels):
        raise ValueError(f"{len(data)} bytes is not a whole number of {channels}-channel "
                         f"{dtype.itemsize}-byte frames")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    full_scale = float(2 ** (8 * dtype.itemsize - 1))
    if dtype.kind == "u":  # unsigned: silence is half of full scale
        samples -= full_scale
    if dtype.kind in "iu":
        samples /= full_scale
    return samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples


STDIN_FORMATS = {"s16le": "<i2", "f32le": "<f4"}  # arecord's S16_LE and FLOAT_LE


SOUND_FILE_HEADERS = {"WAV": lambda head: head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE",
                      "FLAC": lambda head: head[:4] == b"fLaC", "OGG": lambda head: head[:4] == b"OggS"}


def _refuse_sound_file(head: bytes) -> None:
    """Raw PCM has no header; a sound file piped to --stdin would be heard as noise from its header on."""
    for kind, matches in SOUND_FILE_HEADERS.items():
        if matches(head):
            raise EdgeError(f"stdin holds a {kind} file, but --stdin reads raw PCM samples: give a file with --wav "
                            "FILE, or pipe raw samples (e.g. sox -t wav - -t raw -e signed -b 16 -c 1 -r 16000 -)")


def stdin_chunks(rate: int, chunk_samples: int, stream: BinaryIO | None = None, source_rate: int | None = None,
                 sample_format: str = "s16le") -> Iterator[np.ndarray]:
    """Raw mono PCM from stdin as chunks at `rate`: signed 16-bit ("s16le") or 32-bit float ("f32le")
    little-endian samples at `source_rate` (default `rate`), e.g. `arecord -f S16_LE -r 16000 -c 1 -t raw`."""
    if sample_format not in STDIN_FORMATS:
        raise EdgeError(f"unknown stdin sample format {sample_format!r}; use one of {', '.join(STDIN_FORMATS)}")
    if source_rate is not None and not 1000 <= source_rate <= 384000:
        raise EdgeError(f"stdin sample rate {source_rate} Hz is not a sample rate; give one like 16000 or 48000")
    dtype = np.dtype(STDIN_FORMATS[sample_format])
    stream = stream or sys.stdin.buffer
    resample = Resampler(source_rate or rate, rate)
    leftover = b""
    first = True
    while True:
        data = stream.read(dtype.itemsize * chunk_samples)
        if not data:
            break
        if first:
            _refuse_sound_file(data)
            first = False
        data = leftover + data
        usable = len(data) - len(data) % dtype.itemsize
        leftover = data[usable:]
        yield resample(pcm_to_float(data[:usable], dtype))
    tail = resample(np.zeros(0, np.float32), last=True)
    if len(tail):
        yield tail


def _sounddevice():
    try:
        import sounddevice
    except OSError as error:  # the Python package is there, the PortAudio library is not
        raise EdgeError(f"PortAudio is missing ({error}); install it: sudo apt-get install libportaudio2") from None
    return sounddevice


def list_devices() -> str:
    devices = _sounddevice().query_devices()
    return str(devices) if len(devices) else "no audio devices found: is a sound card or PulseAudio present?"


class Microphone:
    """A live input device as chunks at `rate`. Use as a context manager; the stream closes on exit.

    The device runs at 16 kHz when it can, else at its own default rate (44.1/48 kHz) and is resampled.
    Audio lost on the way is reported on stderr as it happens (at most one line per 10 s) and still
    counted, so that stream time stays true: blocks dropped because the program fell more than
    `max_latency_s` behind (the oldest go first, which keeps latency bounded) and PortAudio overflows
    come out as silence of the same length. A device that stops delivering audio or disappears (a USB
    microphone pulled out, an audio server restarted) is reopened with growing pauses between tries,
    until it is back; the time it was away goes to `on_reopen(seconds)` of `chunks()` if given (the
    listener passes `Recognizer.skip`, which also starts the model afresh), else it too comes out as
    silence. `instead`: the program's option for reading a recording instead, named in the errors that say
    there is no microphone.
    """

    def __init__(self, rate: int, device: int | str | None = None, block_ms: int = 50, stall_s: float = 5.0,
                 device_rate: int | None = None, retry_s: tuple[float, float] = (0.5, 10.0),
                 max_latency_s: float = 2.0, instead: str = "--wav FILE"):
        self._rate, self._device, self._block_ms, self._stall_s = rate, device, block_ms, stall_s
        self._forced_rate = device_rate  # open the device at this rate instead (e.g. a 48 kHz-only card)
        self._retry_s = retry_s  # first and longest pause between tries to reopen a lost device
        self._instead = instead
        # Blocks, and counts of samples lost between them, in the order they happened; shared by the audio
        # thread and the reader.
        self._pending: deque[np.ndarray | int] = deque()
        self._pending_blocks = 0
        self._max_blocks = max(1, int(1000 * max_latency_s) // block_ms)
        self._ready = threading.Condition()
        self._next_adc_s: float | None = None  # where the next block should start on the device clock
        self._last_audio_s = time.monotonic()
        self._report = Throttled(log)
        self._stream = None
        self.overflows = 0  # PortAudio input overflows and blocks dropped from a full queue
        self.lost_s = 0.0  # seconds of audio lost to both, as far as they could be measured
        self.interruptions = 0  # times the device was lost and reopened
        self.device_rate: int | None = None
        self.device_name: str | None = None

    def _open(self):
        sd = _sounddevice()
        try:
            info = sd.query_devices(self._device, "input")
        except (ValueError, sd.PortAudioError) as error:
            what = "no microphone found" if self._device is None else f"no input device {self._device!r}"
            raise EdgeError(f"{what} ({error}); process a recording with {self._instead}, or see "
                            "--list-devices") from None
        self.device_name = info["name"]
        try:
            wanted = self._forced_rate or self._rate
            sd.check_input_settings(self._device, channels=1, samplerate=wanted, dtype="float32")
            self.device_rate = wanted
        except (ValueError, sd.PortAudioError):
            self.device_rate = int(info["default_samplerate"])
        return sd.InputStream(device=self._device, channels=1, samplerate=self.device_rate, dtype="float32",
                              blocksize=self.device_rate * self._block_ms // 1000, callback=self._callback)

    def _callback(self, indata, frames, time_info, status) -> None:
        """Runs on the audio thread: never blocks for long, never raises."""
        lost = 0
        adc_s = getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0
        if status.input_overflow:
            self.overflows += 1
            # the device clock says how much went missing, where the host API fills it in (else unknown)
            if adc_s and self._next_adc_s is not None:
                lost = max(0, int(round((adc_s - self._next_adc_s) * self.device_rate)))
        self._next_adc_s = adc_s + frames / self.device_rate if adc_s else None
        with self._ready:
            if lost:
                self._pending.append(lost)
            self._pending.append(indata[:, 0].copy())
            self._pending_blocks += 1
            if self._pending_blocks > self._max_blocks:
                self._drop_oldest()
            self._ready.notify()
        self._last_audio_s = time.monotonic()

    def _drop_oldest(self) -> None:
        """The reader fell behind: the oldest block becomes a count of lost samples, so latency stays
        bounded and the newest audio is kept."""
        lost = 0
        while True:
            item = self._pending.popleft()
            if isinstance(item, int):
                lost += item
                continue
            lost += len(item)
            self._pending_blocks -= 1
            self.overflows += 1
            break
        if self._pending and isinstance(self._pending[0], int):
            lost += self._pending.popleft()
        self._pending.appendleft(lost)

    def _next(self, timeout_s: float) -> np.ndarray | int | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._pending, timeout_s):
                return None
            item = self._pending.popleft()
            if not isinstance(item, int):
                self._pending_blocks -= 1
            return item

    def _start(self) -> None:
        sd = _sounddevice()
        try:
            self._stream = self._open()
            self._next_adc_s = None  # a new stream, a new device clock
            self._last_audio_s = time.monotonic()
            self._stream.start()
        except sd.PortAudioError as error:
            self._close()
            raise EdgeError(f"cannot open the microphone ({error}); see --list-devices, or use "
                            f"{self._instead}") from None

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception as error:  # a vanished device may fail to close; it is gone either way
                log.debug("closing the lost stream failed: %s", error)

    def __enter__(self) -> Microphone:
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _reopen(self, reason: str) -> None:
        """Close the lost stream and try to open the device again until it works, pausing longer each time."""
        self.interruptions += 1
        log.warning("%s; reopening it", reason)
        self._close()
        with self._ready:  # audio from before the loss: counted as lost with the gap
            self._pending.clear()
            self._pending_blocks = 0
        pause = self._retry_s[0]
        while True:
            try:
                self._start()
                log.warning("microphone back: %s at %d Hz", self.device_name, self.device_rate)
                return
            except EdgeError as error:
                log.warning("still no microphone (%s); next try in %.1f s", error, pause)
            time.sleep(pause)
            pause = min(2 * pause, self._retry_s[1])

    def _silence(self, lost_samples: int) -> np.ndarray:
        seconds = lost_samples / self.device_rate
        self.lost_s += seconds
        self._report.warn(f"{seconds:.2f} s of audio lost (input overflow or the program fell behind; "
                          f"{self.overflows} so far); counted as silence")
        return np.zeros(int(round(seconds * self._rate)), np.float32)

    def chunks(self, on_reopen: Callable[[float], None] | None = None) -> Iterator[np.ndarray]:
        resample = Resampler(self.device_rate, self._rate)
        waited = 0.0
        poll = min(0.2, self._stall_s)
        while True:
            item = self._next(poll)
            if item is None:
                waited += poll
                lost = self._stream is None or not self._stream.active
                if lost or waited >= self._stall_s:
                    gone_since = self._last_audio_s
                    self._reopen("the microphone stopped" if lost else
                                 f"the microphone delivered no audio for {self._stall_s:g} s")
                    resample, waited = Resampler(self.device_rate, self._rate), 0.0
                    gap_s = max(0.0, time.monotonic() - gone_since)
                    self.lost_s += gap_s
                    if on_reopen is not None:
                        on_reopen(gap_s)
                    else:
                        for start in range(0, int(gap_s * self._rate), self._rate):
                            yield np.zeros(min(self._rate, int(gap_s * self._rate) - start), np.float32)
                continue
            waited = 0.0
            yield self._silence(item) if isinstance(item, int) else resample(item)
