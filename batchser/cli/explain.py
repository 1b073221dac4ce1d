"""``batchser explain``: explanations in words from a language model, over a run's features."""
from __future__ import annotations

import sys

import click

from .app import EXIT_PARTIAL, main, reports_errors, silence_third_party_bars


@main.command("explain")
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--llm", required=True, metavar="MODEL",
              help="A transformers causal language model: a local directory or hub id (an instruction-tuned one, "
                   "e.g. Qwen/Qwen2.5-1.5B-Instruct; README 'Explanations in words').")
@click.option("--prompt", "prompt_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your prompt template (str.format fields {utt_id} {spk} {label} {score} {scores} {facts} "
                   "{baseline} {duration}) [default: batchser/prompts/explain.txt].")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=96, show_default=True,
              help="The longest explanation, in the model's tokens (a sentence is ~20-30).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Prompts generated together (left padding: the same tokens as one at a time).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 (auto: cuda when available).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="auto: bfloat16 on CUDA, float32 on CPU.")
@click.option("--part-size", type=click.IntRange(min=1), default=200, show_default=True,
              help="Explanations per committed part (what a kill can cost at most).")
@click.option("--quiet", "-q", is_flag=True, help="No notes and no third-party progress bars (the summary stays).")
@reports_errors
def explain_cmd(out_dir, llm, prompt_file, max_new_tokens, batch_size, device, dtype, part_size, quiet):
    """Explain each prediction of OUT in words, from its label, its scores and its voice.

    \b
    Needs a run with --features prosody (and optionally egemaps): each row's facts
    (pitch level and range, loudness, speaking rate, pauses, voice quality, a
    gender cue), against its speaker's medians, go into the prompt; the model's
    text goes to OUT/explanations/ (utt_id, prompt_sha256, model, text, error),
    greedy, in atomic parts: running it again continues. Labels never change.
    Exit 1 when some rows failed to generate (their error column says why).
    """
    from ..llm import explain

    if quiet:
        silence_third_party_bars()
    log = (lambda *_: None) if quiet else (lambda m: click.echo(m, err=True))
    r = explain(out_dir, llm=llm, prompt=prompt_file, max_new_tokens=max_new_tokens, batch_size=batch_size,
                device=device, dtype=dtype, part_size=part_size, log=log)
    rate = (r.written + r.failed) / r.seconds if r.seconds else 0.0
    click.echo(f"explained {r.written} rows ({r.failed} failed, {r.skipped} already done) in {r.seconds:.1f} s "
               f"({rate:.2f} per second) -> {r.dir}/", err=True)
    if r.failed:
        sys.exit(EXIT_PARTIAL)
