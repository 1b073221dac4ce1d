"""The command group, the one table from exceptions to exit codes, and the options several
commands share. Commands live in one module per topic: :mod:`.run`, :mod:`.segment` (segment,
plot), :mod:`.evaluation` (eval, summarize), :mod:`.heads` (train-head, apply-head),
:mod:`.data` (info, prepare, features, export, merge, verify, make-test-model).

Exit codes scripts can trust (one meaning each):
  0    every input utterance is in labels/ (this run's or an earlier run's)
  1    finished, but some input utterances are in errors/ (also a resume with nothing left to
       do; merge: the merged errors/); merge: also shards missing or unfinished
  2    usage error, unreadable or empty corpus, a foreign or busy --out, other settings on resume
       (merge: shards run with different settings), a damaged part, a link leading out of OUT
  3    the model cannot be found or loaded (offline without a local directory, ...)
  4    stopped unfinished and resumable (disk full, read-only OUT, a device process died)
  130  Ctrl-C, 143 SIGTERM: stopped after committing what was done; run again to resume
"""
from __future__ import annotations

import functools
import sys

import click

from ..version import __version__

EXIT_PARTIAL, EXIT_INPUT, EXIT_MODEL, EXIT_UNFINISHED = 1, 2, 3, 4


def exit_codes():
    """Expected failures -> exit code, most specific first (imported only when one happens)."""
    from ..config import RunStopped
    from ..corpus import CorpusError
    from ..models import ModelNotAvailable
    from ..store import MergeError, OutputBusy

    return [(CorpusError, EXIT_INPUT), (ModelNotAvailable, EXIT_MODEL), (OutputBusy, EXIT_INPUT),
            (MergeError, EXIT_PARTIAL), (RunStopped, EXIT_UNFINISHED),
            ((ValueError, FileNotFoundError), EXIT_INPUT), (RuntimeError, EXIT_UNFINISHED)]


def interrupted(sig: int) -> None:
    click.echo(f"interrupted by {'SIGTERM' if sig == 15 else 'SIGINT'}: what was committed is kept; "
               "run the same command again to resume", err=True)
    sys.exit(128 + sig)


def reports_errors(cmd):
    """Turn an expected failure into 'error: <message>' on stderr and its documented exit code;
    SIGTERM and Ctrl-C stop the command cleanly with 143 and 130 (128 + the signal)."""
    @functools.wraps(cmd)
    def wrapper(*args, **kwargs):
        from ..procs import Interrupted, received_signal, terminate_as_interrupt

        try:
            with terminate_as_interrupt():
                return cmd(*args, **kwargs)
        except KeyboardInterrupt as e:
            interrupted(e.signum if isinstance(e, Interrupted) else 2)
        except Exception as e:
            if received_signal() is not None:  # the signal killed the decoders first: it wins
                interrupted(received_signal())
            for kinds, code in exit_codes():
                if isinstance(e, kinds):
                    click.echo(f"error: {e}", err=True)
                    sys.exit(code)
            raise

    return wrapper


def vad_options(cmd):
    """The VAD's options (``batchser segment`` and ``run --vad``); defaults: batchser.vad.VadOptions."""
    from ..vad import VadOptions

    d = VadOptions()
    opts = [
        click.option("--vad-threshold", type=float, default=d.threshold, show_default=True,
                     help="Speech probability above which a 32-ms frame is speech (a segment ends below it - 0.15)."),
        click.option("--vad-min-speech", type=float, default=d.min_speech, show_default=True, metavar="SECONDS",
                     help="Shorter stretches of speech are dropped."),
        click.option("--vad-min-silence", type=float, default=d.min_silence, show_default=True, metavar="SECONDS",
                     help="A pause at least this long ends a segment."),
        click.option("--vad-pad", type=float, default=d.pad, show_default=True, metavar="SECONDS",
                     help="Added on each side of a segment."),
        click.option("--vad-max-segment", type=float, default=d.max_segment, show_default=True, metavar="SECONDS",
                     help="Longer speech is split at its longest pause (>= 98 ms), or cut just before this length "
                          "where it has none."),
        click.option("--vad-min-segment", type=float, default=d.min_segment, show_default=True, metavar="SECONDS",
                     help="Segments shorter than this (after padding) are dropped and counted."),
    ]
    for o in reversed(opts):
        cmd = o(cmd)
    return cmd


def vad_opts(kw: dict):
    """Pop the --vad-* options out of a command's keyword arguments into a VadOptions."""
    from ..vad import VadOptions

    return VadOptions(**{k[4:]: kw.pop(k) for k in list(kw) if k.startswith("vad_") and k != "vad"})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchser")
def main() -> None:
    """Batch speech emotion recognition for Kaldi-style corpora.

    \b
    Typical use:
      batchser run data/train/wav.scp --out outputs/          # real model from the hub
      batchser make-test-model /tmp/e2v                        # random-weight model, offline
      batchser run sample_scp/wav.scp --out outputs/ --model /tmp/e2v
      batchser info data/train                                 # check a corpus first
      batchser run calls/ --out outputs/                       # also: one file, a list, lhotse cuts
      batchser eval outputs/ --label-map ravdess               # UA/WA/F1 against utt2emo
      batchser prepare data/train --nj 16                      # durations once, before --shard
      batchser run data/train --out outputs/ --shard auto      # one array task; then merge
      batchser segment calls/wav.scp --out data/calls_seg      # long recordings -> speech segments
      batchser run calls/wav.scp --out outputs/ --vad          # the same, then labels, in one step
      batchser plot outputs/ --rec call7                       # emotion over time, as a PNG
      batchser export outputs/ --kaldi exp/emo                 # utt2emo_hyp, embeddings.scp

    Outputs are Parquet tables (labels/, errors/) and .npy embeddings; read them with
    pandas, DuckDB or `batchser.open_results("outputs/")`. Exit codes: 0 all done,
    1 done with some utterances in errors/, 2 bad input or busy/foreign OUT, 3 model
    unavailable, 4 stopped unfinished (run again to resume), 130/143 interrupted by
    Ctrl-C/SIGTERM (run again to resume).
    """


def feature_sets(spec):
    """``--features`` / ``--set``: the canonical spelling, the package there (a usage error, exit 2)."""
    from ..loader import feature_spec, parse_feature_sets

    try:
        sets = parse_feature_sets(spec)
        if "egemaps" in sets:
            from ..egemaps import columns

            columns()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--features")
    return feature_spec(sets)


def echo_to(log_file):
    """A log function: stderr, and appended to ``log_file`` when given (flushed line by line)."""
    from ..progress import append_to

    to_file = append_to(log_file) if log_file else None

    def echo(m: str) -> None:
        click.echo(m, err=True)
        if to_file is not None:
            to_file(m)

    return echo


def silence_third_party_bars() -> None:
    """-q: no download or "Loading weights" bars from huggingface_hub / transformers either."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
