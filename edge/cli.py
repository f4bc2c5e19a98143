"""What `python -m edge.listen` and `python -m edge.serve` share on the command line: the one-line argparse
errors, the model and MQTT options, the shipped model's path and safe printing of text from a model file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.errors import EdgeError
from edge.mqtt import TOPIC_PREFIX

MODEL_NAME = "kws.onnx"


def default_model() -> Path:
    """The shipped model: models/ beside the package in a clone (an editable install), else where
    `pip install .` put it (PREFIX/share/kws-edge/models)."""
    beside = Path(__file__).resolve().parent.parent / "models" / MODEL_NAME
    return beside if beside.is_file() else Path(sys.prefix) / "share" / "kws-edge" / "models" / MODEL_NAME


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, as the program's other errors are (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog.removeprefix('python -m ')}: error: {message} (see --help)\n")


def score(text: str) -> float:
    """An argparse type: a threshold, a score in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a score in (0, 1], e.g. 0.65")
    return value


def speeds(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated speeds, checked as the runtime checks them."""
    from edge.runtime import check_speeds

    try:
        return check_speeds(text.split(","))
    except EdgeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --threshold and --speeds: the same for edge.listen and edge.serve."""
    p.add_argument("--model", type=Path, action="append", default=None,
                   help="exported kws window model, an .onnx file; its streaming twin NAME.stream.onnx is used "
                        "from beside it. Repeat it to hear several models at once (of one sample rate), each with "
                        "its own stored settings: two models firing within the longer of their suppression times "
                        "give one event, the higher score, which names its model (the file's stem; in JSON, hooks "
                        "and MQTT), and every event waits that long for the other models (1 s for the shipped "
                        "model) (default: the shipped models/kws.onnx)")
    p.add_argument("--threshold", type=score, default=None, metavar="SCORE",
                   help="score in (0, 1] needed to report a keyword at once, lower is more sensitive; with several "
                        "--model, for each of them (default: the model's own thresholds, 0.65 for the shipped "
                        "model; its slower rule for steadily heard words stays)")
    p.add_argument("--speeds", type=speeds, default=None, metavar="LIST",
                   help="hear the stream at these speeds, from 0.8 to 1.25 and 1 among them, and average the "
                        "scores, e.g. 1,0.95,1.05; each speed is one more model pass, 1 alone costs least; with "
                        "several --model, for each of them (default: the model's own, 1,0.9,1.1 for the shipped "
                        "model)")


def model_paths(args) -> list[Path]:
    """The --model files given, or the shipped model."""
    return args.model or [default_model()]


def input_device(text: str) -> int | str:
    """An argparse type: an input device by its number (as --list-devices shows it) or part of its name."""
    return int(text) if text.isdigit() else text


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """--device and --list-devices, for every program that reads a microphone (edge.sources.Microphone)."""
    p.add_argument("--device", type=input_device, default=None, metavar="NUMBER_OR_NAME",
                   help="input device: its number, or part of its name (see --list-devices; default: the "
                        "system's default input)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")


def add_mqtt_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("MQTT", "publish every event to a broker as well (see edge/mqtt.py for topics)")
    group.add_argument("--mqtt-url", metavar="URL", default=None,
                       help="the broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] for TLS, e.g. "
                            "mqtt://localhost:1883; events wait (up to 1000) while it is away, and any never "
                            "delivered are counted at the end (default: no MQTT)")
    group.add_argument("--mqtt-topic", metavar="PREFIX", default=None,
                       help=f"with --mqtt-url: topic prefix, events go to PREFIX/NAME/detection; without + # or "
                            f"NUL (default: {TOPIC_PREFIX})")
    group.add_argument("--mqtt-credentials", metavar="FILE", type=Path, default=None,
                       help="with --mqtt-url: user name on the first line, password on the second (default: the "
                            "environment's KWS_MQTT_USERNAME and KWS_MQTT_PASSWORD, if set)")
    group.add_argument("--mqtt-ca", metavar="FILE", type=Path, default=None,
                       help="with mqtts://: the CA certificate (PEM) that signed the broker's, for a private CA "
                            "(default: the system's CAs)")
    group.add_argument("--name", default=None,
                       help="with --mqtt-url: this program's name in topics and events (edge.serve --zeroconf "
                            "also announces it), without + # or NUL (default: the host name)")


def check_mqtt_arguments(args, name_used: bool = False) -> None:
    """Refuse MQTT options that would be ignored because --mqtt-url is missing. `name_used`: the program
    uses --name for something besides MQTT (edge.serve announces it with --zeroconf)."""
    if args.mqtt_url is not None:
        return
    unused = {"--mqtt-topic": args.mqtt_topic, "--mqtt-credentials": args.mqtt_credentials,
              "--mqtt-ca": args.mqtt_ca, "--name": None if name_used else args.name}
    given = [flag for flag, value in unused.items() if value is not None]
    if given:
        raise EdgeError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for publishing to MQTT; "
                        "add --mqtt-url")


def mqtt_publisher(args):
    """The MQTT publisher the arguments ask for, or None."""
    if args.mqtt_url is None:
        return None
    from edge.mqtt import MqttPublisher

    topic = TOPIC_PREFIX if args.mqtt_topic is None else args.mqtt_topic
    publisher = MqttPublisher(args.mqtt_url, topic, args.name, args.mqtt_credentials, args.mqtt_ca)
    publisher.wait_for_broker()  # a broker that is away is said before the first event
    return publisher


def printable(text: str) -> str:
    """Text from a model file, safe to print: control characters (terminal escapes) become '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


def run_tool(prog: str, main, *errors: type[Exception]) -> int:
    """Run the `main()` of a script in tools/ by the project's convention: an EdgeError, or one of `errors`
    (a tool of the training side passes KwsError), ends it with one line on stderr and exit code 2, not a
    traceback. Returns the exit code for sys.exit."""
    try:
        return main() or 0
    except (EdgeError, *errors) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
