"""Random-weight model directories of the real architectures, in the real on-disk layout.

No hub is reachable in CI, so tests and benchmarks build models here and load them
through exactly the code path a user's downloaded checkpoint takes:

* emotion2vec+ : ``config.yaml`` + ``model.pt`` + ``tokens.txt`` + ``configuration.json``,
  loadable with ``funasr.AutoModel(model=DIR)``.
* Whisper audio classification : ``save_pretrained`` output of
  ``transformers.WhisperForAudioClassification`` plus its ``WhisperFeatureExtractor``.

These models have random weights. Their predictions mean nothing; every directory
carries a ``BATCHSER_TEST_MODEL`` marker file saying so, and batchser labels runs on
such a model as a test model in the manifest.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional

MARKER = "BATCHSER_TEST_MODEL"

# emotion2vec+ tokens.txt as published with the checkpoints (Chinese/English pairs, then <unk>).
E2V_TOKENS = [
    "生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral",
    "其他/other", "难过/sad", "吃惊/surprised", "<unk>",
]

# Architecture of emotion2vec / emotion2vec+ base: a data2vec 2.0 audio encoder.
# Sources (stated per the Foundation issue):
#  * the emotion2vec paper (arXiv 2312.15185) and README of ddlBoJack/emotion2vec: data2vec 2.0 base;
#  * the public config.yaml of iic/emotion2vec_base (model_conf block: depth 8, num_heads 12,
#    embed_dim 768, mlp_ratio 4, norm_eps 1e-5, layer_norm_first false, ...);
#  * ports of the checkpoint to other frameworks (an MLX port's config): 7-layer conv extractor
#    [(512,10,5)] + [(512,3,2)]*4 + [(512,2,2)]*2, conv_pos_width 95, conv_pos_depth 5,
#    conv_pos_groups 16, prenet_depth 4, 10 extra tokens, ALiBi with learned per-head scale;
#  * data2vec 2.0's audio defaults in fairseq (extractor_mode layer_norm, normalize true).
# The large variant follows data2vec 2.0 large (embed 1024, 16 heads, 16 blocks + 8 prenet
# blocks), which gives the ~300M parameters the emotion2vec_plus_large model card states.
_E2V_BASE: Dict[str, Any] = {
    "model": "Emotion2vec",
    "model_conf": {
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": 8,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": 12,
        "norm_eps": 1e-05,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "embed_dim": 768,
        "mlp_ratio": 4.0,
        "layer_norm_first": False,
        "average_top_k_layers": 8,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "layer_norm_target_layer": False,
        "batch_norm_target_layer": False,
        "instance_norm_target_layer": True,
        "instance_norm_targets": False,
        "layer_norm_targets": False,
        "ema_decay": 0.999,
        "ema_same_dtype": True,
        "log_norms": True,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 20000,
        "ema_encoder_only": False,
        "max_update": 100000,
        "extractor_mode": "layer_norm",
        "shared_decoder": None,
        "min_target_var": 0.1,
        "min_pred_var": 0.01,
        "supported_modality": "AUDIO",
        "mae_init": False,
        "seed": 1,
        "skip_ema": False,
        "cls_loss": 1.0,
        "recon_loss": 0.0,
        "d2v_loss": 1.0,
        "decoder_group": False,
        "adversarial_training": False,
        "adversarial_hidden_dim": 128,
        "adversarial_weight": 0.1,
        "cls_type": "chunk",
        "normalize": True,
        "modalities": {
            "audio": {
                "type": "AUDIO",
                "prenet_depth": 4,
                "prenet_layerdrop": 0.05,
                "prenet_dropout": 0.1,
                "start_drop_path_rate": 0.0,
                "end_drop_path_rate": 0.0,
                "num_extra_tokens": 10,
                "init_extra_token_zero": True,
                "mask_noise_std": 0.01,
                "mask_prob_min": None,
                "inverse_mask": False,
                "mask_prob": 0.5,
                "mask_prob_adjust": 0.05,
                "keep_masked_pct": 0.0,
                "mask_length": 5,
                "add_masks": False,
                "remove_masks": False,
                "mask_dropout": 0.0,
                "encoder_zero_mask": True,
                "mask_channel_prob": 0.0,
                "mask_channel_length": 64,
                "ema_local_encoder": False,
                "local_grad_mult": 1.0,
                "use_alibi_encoder": True,
                "alibi_scale": 1.0,
                "learned_alibi": False,
                "alibi_max_pos": None,
                "learned_alibi_scale": True,
                "learned_alibi_scale_per_head": True,
                "learned_alibi_scale_per_layer": False,
                "num_alibi_heads": 12,
                "model_depth": 8,
                "decoder": {
                    "decoder_dim": 384,
                    "decoder_groups": 16,
                    "decoder_kernel": 7,
                    "decoder_layers": 4,
                    "input_dropout": 0.1,
                    "add_positions_masked": False,
                    "add_positions_all": False,
                    "decoder_residual": True,
                    "projection_layers": 1,
                    "projection_ratio": 2.0,
                },
                "extractor_mode": "layer_norm",
                "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
                "conv_pos_width": 95,
                "conv_pos_groups": 16,
                "conv_pos_depth": 5,
                "conv_pos_pre_ln": False,
            }
        },
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
}

E2V_SIZES: Dict[str, Dict[str, Any]] = {
    # published sizes
    "base": {},
    "large": {"embed_dim": 1024, "num_heads": 16, "depth": 16, "prenet_depth": 8},
    # tiny: same layer types, small dims, for unit tests (runs in milliseconds on a CPU)
    "tiny": {
        "embed_dim": 64, "num_heads": 4, "depth": 2, "prenet_depth": 1,
        "conv_dim": 32, "conv_pos_width": 15, "conv_pos_depth": 3, "conv_pos_groups": 4,
        "num_extra_tokens": 2,
    },
}


def emotion2vec_config(size: str = "tiny", head: bool = True) -> Dict[str, Any]:
    """The config.yaml contents for an emotion2vec model of the given size."""
    if size not in E2V_SIZES:
        raise ValueError(f"unknown emotion2vec size {size!r}; choose from {sorted(E2V_SIZES)}")
    cfg = copy.deepcopy(_E2V_BASE)
    mc = cfg["model_conf"]
    au = mc["modalities"]["audio"]
    over = E2V_SIZES[size]
    for key in ("embed_dim", "num_heads", "depth"):
        if key in over:
            mc[key] = over[key]
    au["num_alibi_heads"] = mc["num_heads"]
    au["model_depth"] = mc["depth"]
    au["prenet_depth"] = over.get("prenet_depth", au["prenet_depth"])
    for key in ("conv_pos_width", "conv_pos_depth", "conv_pos_groups", "num_extra_tokens"):
        if key in over:
            au[key] = over[key]
    if "conv_dim" in over:
        d = over["conv_dim"]
        au["feature_encoder_spec"] = f"[({d}, 10, 5)] + [({d}, 3, 2)] * 4 + [({d},2,2)] + [({d},2,2)]"
    if not head:
        cfg.pop("tokenizer")
        cfg.pop("tokenizer_conf")
    return cfg


def _write_marker(out: Path, what: str) -> None:
    (out / MARKER).write_text(
        f"{what}\nThis directory was made by batchser.testing with RANDOM weights.\n"
        "Its predictions are meaningless; use it for plumbing tests and benchmarks only.\n",
        encoding="utf-8",
    )


def make_emotion2vec_dir(out: str | Path, size: str = "tiny", seed: int = 0, head: bool = True) -> Path:
    """Write a random-weight emotion2vec(+) model directory in funasr's layout.

    ``head=False`` gives an ``emotion2vec_base``-like model (embeddings only, no classifier).
    """
    import torch
    import yaml

    from funasr.models.emotion2vec.model import Emotion2vec

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = emotion2vec_config(size, head=head)
    torch.manual_seed(seed)
    vocab = len(E2V_TOKENS) if head else -1
    model = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=vocab)
    # Perturb every parameter: freshly initialised LayerNorms (weight 1, bias 0), zero extra
    # tokens and a unit ALiBi scale would hide bugs that real trained weights expose.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "alibi_scale" in name:
                p.uniform_(0.5, 1.5)
            elif p.dim() == 1 or "extra_tokens" in name:
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v for k, v in model.state_dict().items()}
    torch.save({"model": state}, out / "model.pt")
    with open(out / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, allow_unicode=True, sort_keys=False)
    if head:
        (out / "tokens.txt").write_text("\n".join(E2V_TOKENS) + "\n", encoding="utf-8")
    (out / "configuration.json").write_text(
        json.dumps(
            {
                "framework": "pytorch",
                "task": "emotion-recognition",
                "model": {"type": "emotion2vec"},
                "pipeline": {"type": "emotion-recognition"},
                "model_name_in_hub": {"ms": "", "hf": ""},
                "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                                    **({"tokenizer_conf": {"token_list": "tokens.txt"}} if head else {})},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    _write_marker(out, f"emotion2vec size={size} head={head} seed={seed}")
    return out


# Whisper encoder dimensions. large-v3: the published config.json of openai/whisper-large-v3
# (d_model 1280, 32 encoder layers, 20 heads, ffn 5120, 128 mel bins, 1500 source positions).
WHISPER_SIZES: Dict[str, Dict[str, Any]] = {
    "large-v3": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                     encoder_ffn_dim=5120, num_mel_bins=128, max_source_positions=1500,
                     decoder_layers=32, decoder_attention_heads=20, decoder_ffn_dim=5120),
    # openai/whisper-tiny's dimensions (39 M parameters): benchmarks of the ASR engines
    "openai-tiny": dict(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                        num_mel_bins=80, max_source_positions=1500, decoder_layers=4, decoder_attention_heads=6,
                        decoder_ffn_dim=1536),
    "tiny": dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                 num_mel_bins=128, max_source_positions=1500, decoder_layers=1,
                 decoder_attention_heads=4, decoder_ffn_dim=128),
}

# Labels of the public Whisper-large-v3 emotion classifier the seeds mention (7 classes).
WHISPER_LABELS = ["angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]


def make_whisper_classifier_dir(out: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight ``WhisperForAudioClassification`` directory (``save_pretrained`` layout)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown whisper size {size!r}; choose from {sorted(WHISPER_SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dims = WHISPER_SIZES[size]
    cfg = WhisperConfig(
        **dims,
        vocab_size=51866,
        id2label=dict(enumerate(WHISPER_LABELS)),
        label2id={l: i for i, l in enumerate(WHISPER_LABELS)},
        classifier_proj_size=256,
        use_weighted_layer_sum=False,
    )
    torch.manual_seed(seed)
    model = WhisperForAudioClassification(cfg)
    model.save_pretrained(out)
    fe = WhisperFeatureExtractor(feature_size=dims["num_mel_bins"], do_normalize=True)
    fe.save_pretrained(out)
    _write_marker(out, f"whisper-audio-classification size={size} seed={seed}")
    return out


def make_wav2vec2_classifier_dir(out: str | Path, attention_mask: bool = True, seed: int = 0,
                                 labels=("angry", "happy", "neutral", "sad"),
                                 problem_type: Optional[str] = None) -> Path:
    """A tiny random-weight ``Wav2Vec2ForSequenceClassification`` (audio-classification recipe layout).

    ``attention_mask=True``: layer-norm feature encoder, feature extractor returns a mask (like
    wav2vec2-large-lv60 / WavLM). ``False``: group-norm encoder without mask (like wav2vec2-base),
    a model whose output changes when padded. ``problem_type``: the config's
    (``regression``, ``multi_label_classification``; None: single-label classification).
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if attention_mask else "group", do_stable_layer_norm=attention_mask,
        classifier_proj_size=16, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        problem_type=problem_type,
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(cfg)
    model.save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=attention_mask).save_pretrained(out)
    _write_marker(out, f"wav2vec2-audio-classification attention_mask={attention_mask} "
                       f"problem_type={problem_type} seed={seed}")
    return out


# audEERING's dimensional model: the output order of the public checkpoint's id2label
DIM_LABELS = ("arousal", "dominance", "valence")


def make_w2v2_dim_dir(out: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """A random-weight model in the layout of ``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``:
    config.json naming ``Wav2Vec2ForSpeechClassification`` (problem_type regression, pooling_mode
    mean), weights ``wav2vec2.*`` + ``classifier.dense``/``classifier.out_proj``, and the
    Wav2Vec2Processor files (feature extractor with attention mask, CTC tokenizer) that the
    card's code loads. ``size="large-robust-12"``: the checkpoint's real dimensions (~165 M parameters).
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    from .models.w2v2_dim import ARCHITECTURE, model_class

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dims = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if size == "large-robust-12":  # the public checkpoint's config.json
        dims = dict(hidden_size=1024, num_hidden_layers=12, num_attention_heads=16, intermediate_size=4096,
                    conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
    elif size != "tiny":
        raise ValueError(f"unknown w2v2-dim size {size!r}; choose from tiny, large-robust-12")
    cfg = Wav2Vec2Config(
        **dims, feat_extract_norm="layer", do_stable_layer_norm=True, final_dropout=0.1,
        num_labels=len(DIM_LABELS), id2label=dict(enumerate(DIM_LABELS)),
        label2id={l: i for i, l in enumerate(DIM_LABELS)}, problem_type="regression", vocab_size=None,
    )
    cfg.pooling_mode = "mean"
    cfg.finetuning_task = "wav2vec2_reg"
    torch.manual_seed(seed)
    model = model_class()(cfg)
    with torch.no_grad():  # weights of a trained head's scale, so the outputs vary between utterances
        model.classifier.dense.weight.normal_(0, 0.5)
        model.classifier.out_proj.weight.normal_(0, 0.5)
    model.save_pretrained(out)
    conf = json.loads((out / "config.json").read_text())
    conf["architectures"] = [ARCHITECTURE]  # what the public checkpoint's config.json says
    (out / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    vocab = out / "vocab.json"
    vocab.write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
                                 **{c: 5 + i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")}}))
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=Wav2Vec2CTCTokenizer(str(vocab))).save_pretrained(out)
    _write_marker(out, f"w2v2-dim (audEERING dimensional layout) size={size} seed={seed}")
    return out


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte-level alphabet (Whisper's tokenizer uses it): printable bytes as themselves,
    the others shifted past 255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _whisper_tokenizer_files(out: Path, multilingual: bool):
    """A Whisper tokenizer of the real kind (byte-level BPE, Whisper's special tokens in Whisper's
    order: <|endoftext|>, <|startoftranscript|>, languages, tasks, <|notimestamps|>, timestamps),
    with the 256 byte tokens as its whole text vocabulary: no download needed."""
    import json

    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    # filler words up to the text vocabulary of a real checkpoint, so that every id sits where it has
    # it: multilingual models 50257 text tokens (<|endoftext|> = 50257), English-only ones 50256
    for i in range((50257 if multilingual else 50256) - len(vocab)):
        vocab[f"Ġw{i}"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # multilingual: large-v3's 100 languages (vocabulary 51866); English-only: the 99 of the .en models (51864)
    langs = list(LANGUAGES) if multilingual else list(LANGUAGES)[:99]
    specials = (["<|startoftranscript|>"] + [f"<|{l}|>" for l in langs]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                   "<|notimestamps|>"])
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    return vocab, specials, stamps, langs


def make_whisper_asr_dir(out: str | Path, size: str = "tiny", seed: int = 0, multilingual: bool = True,
                         max_length: int = 32, suppress_timestamps: bool = True) -> Path:
    """Write a random-weight ``WhisperForConditionalGeneration`` in the ``save_pretrained`` layout
    of a real checkpoint: config, weights, generation config (languages, tasks, no-timestamps
    token, suppressed tokens), tokenizer and feature extractor (a ``WhisperProcessor``).

    ``max_length``: the generation config's limit on decoded tokens (random weights rarely
    emit <|endoftext|>, so a short limit keeps tests quick; the reference pipeline obeys it too).
    ``suppress_timestamps=False``: timestamp tokens may be emitted (long-form decoding then seeks
    on them); special tokens stay suppressed either way.
    """
    import torch
    from transformers import (AddedToken, GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown whisper size {size!r}; choose from {sorted(WHISPER_SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab, specials, stamps, langs = _whisper_tokenizer_files(out, multilingual)
    tok = WhisperTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), unk_token="<|endoftext|>",
                           bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in specials]})
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in stamps])
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials + stamps[:1]}
    eot, sot = vocab["<|endoftext|>"], ids["<|startoftranscript|>"]
    dims = dict(WHISPER_SIZES[size])
    dims["num_mel_bins"] = 80 if size == "tiny" else dims["num_mel_bins"]
    n_vocab = len(tok)
    # init_std 0.2 (transformers' default 0.02): a tiny random decoder then follows its input, so that
    # different audio gives different transcripts (tests can see one input's text leak into another's)
    cfg = WhisperConfig(**dims, vocab_size=n_vocab, max_target_positions=448, decoder_start_token_id=sot, init_std=0.2,
                        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                        begin_suppress_tokens=[vocab["Ġ"], eot], suppress_tokens=[])
    # a random decoder would emit special and timestamp tokens as often as text: they are suppressed
    # (real checkpoints list some tokens here too), so that transcripts are made of text
    suppress = list(range(sot, n_vocab if suppress_timestamps else ids["<|notimestamps|>"] + 1))
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg)
    with torch.no_grad():  # a larger <|endoftext|> bias than random: transcripts end before the limit now and then
        model.proj_out.weight[eot].mul_(4.0)
    gc = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, max_length=max_length,
        is_multilingual=multilingual, no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={f"<|{l}|>": ids[f"<|{l}|>"] for l in langs} if multilingual else {},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]} if multilingual else {},
        prev_sot_token_id=ids["<|startofprev|>"], begin_suppress_tokens=[vocab["Ġ"], eot], suppress_tokens=suppress,
        max_initial_timestamp_index=50, alignment_heads=[[0, 0]], return_timestamps=False,
        forced_decoder_ids=None)
    model.generation_config = gc
    model.save_pretrained(out)
    fe = WhisperFeatureExtractor(feature_size=dims["num_mel_bins"])
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)
    fe.save_pretrained(out)  # preprocessor_config.json, as hub checkpoints have it (CTranslate2's converter reads it)
    _write_marker(out, f"whisper-asr size={size} seed={seed} multilingual={multilingual}")
    return out


def make_whisper_ct2_dir(out: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random-weight CTranslate2 (faster-whisper) directory: :func:`make_whisper_asr_dir`'s
    model converted by CTranslate2's own converter (``ct2-transformers-converter``), with the
    tokenizer and preprocessor files faster-whisper reads. Its random decoder emits timestamp
    tokens, which exercises faster-whisper's segment splitting and seek rule."""
    import tempfile

    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        raise ValueError("whisper-asr-ct2 needs ctranslate2 (pip install 'batchser[asr]')") from e
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        hf = make_whisper_asr_dir(Path(tmp) / "hf", size=size, seed=seed, multilingual=True)
        TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(out), force=True)
    _write_marker(out, f"whisper-asr-ct2 size={size} seed={seed}")
    return out


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def make_causal_lm_dir(out: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A tiny random-weight LlamaForCausalLM with a real tokenizer (byte-level BPE trained here
    on a few hundred words, ``<s>``/``</s>``/``<pad>`` and chat-role tokens) and a chat template,
    in ``save_pretrained`` layout: what ``batchser explain --llm`` loads, offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    words = ("the speaker sounds angry happy sad neutral calm fearful surprised disgusted because pitch is high low "
             "loudness loud quiet speaking rate fast slow range wide narrow than their usual median voice energy "
             "pauses long short emotion label score explain why this utterance semitones decibels syllables per "
             "second above below compared with and or not very slightly much more less a an of in to it was").split()
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] + ["0123456789.,:;+-%()"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
                      initializer_range=0.5)  # varied tokens from random weights (0.02 repeats one)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                     do_sample=False).save_pretrained(out)
    _write_marker(out, "causal-lm")
    return out
