"""Batched emotion2vec must equal funasr's own per-utterance inference (same weights, same audio).

These are the heart of the suite: padding must never change a result.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from batchser.models import emotion2vec as e2v
from conftest import speechlike, write_wav

# very different lengths in one batch (lots of padding), including the model's minimum (400 samples)
LENGTHS = [16000, 8000, 23456, 4000, 40000, 1234, 16001, 400, 431]


def reference(funasr_model, wav, tmp_path, granularity="utterance"):
    p = write_wav(tmp_path / f"ref_{len(wav)}.wav", wav)  # float WAV at 16 kHz: lossless
    r = funasr_model.generate(str(p), granularity=granularity, extract_embedding=True)[0]
    return np.asarray(r["feats"]), np.asarray(r["scores"])


@pytest.fixture(scope="module")
def wavs():
    return [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]


def test_batched_equals_funasr_per_utterance(e2v_backend, funasr_model, wavs, tmp_path):
    out = e2v_backend.forward(wavs)
    assert out.embeddings.shape == (len(wavs), e2v_backend.embed_dim)
    for i, w in enumerate(wavs):
        feats, scores = reference(funasr_model, w, tmp_path)
        np.testing.assert_allclose(out.embeddings[i], feats, atol=2e-5, rtol=0, err_msg=f"utt {i}")
        np.testing.assert_allclose(out.scores[i], scores, atol=2e-6, rtol=0)
        assert int(np.argmax(out.scores[i])) == int(np.argmax(scores))


def test_gpu_form_of_the_extractor_equals_funasr_end_to_end(e2v_backend, funasr_model, wavs, tmp_path, monkeypatch):
    """The whole padded batch through the conv extractor at once (what a GPU runs), forced on the
    CPU: the full forward still equals funasr per utterance, and the per-utterance CPU form."""
    cpu_form = e2v_backend.forward(wavs)
    monkeypatch.setattr(e2v, "WHOLE_BATCH_EXTRACTOR", True)
    calls = []
    orig = e2v._run_steps
    monkeypatch.setattr(e2v, "_run_steps", lambda steps, x: calls.append(x.shape) or orig(steps, x))
    out = e2v_backend.forward(wavs)
    assert calls == [(len(wavs), max(len(w) for w in wavs))]  # one call on the padded batch
    np.testing.assert_allclose(out.embeddings, cpu_form.embeddings, atol=2e-5, rtol=0)
    for i, w in enumerate(wavs):
        feats, scores = reference(funasr_model, w, tmp_path)
        np.testing.assert_allclose(out.embeddings[i], feats, atol=2e-5, rtol=0, err_msg=f"utt {i}")
        np.testing.assert_allclose(out.scores[i], scores, atol=2e-6, rtol=0)


def test_frame_embeddings_equal_funasr_frames(e2v_backend, funasr_model, wavs, tmp_path):
    out = e2v_backend.forward(wavs, frames=True)
    for i, w in enumerate(wavs):
        ref, _ = reference(funasr_model, w, tmp_path, granularity="frame")
        assert out.frames[i].shape == ref.shape  # same number of 50 Hz frames
        np.testing.assert_allclose(out.frames[i], ref, atol=5e-5, rtol=0)


def test_batch_composition_never_changes_a_result(e2v_backend, wavs):
    alone = np.stack([e2v_backend.forward([w]).embeddings[0] for w in wavs])
    together = e2v_backend.forward(wavs).embeddings
    perm = np.random.default_rng(0).permutation(len(wavs))
    shuffled = e2v_backend.forward([wavs[i] for i in perm]).embeddings
    np.testing.assert_allclose(together, alone, atol=2e-5, rtol=0)
    np.testing.assert_allclose(shuffled, alone[perm], atol=2e-5, rtol=0)


def test_naive_padded_batch_is_wrong(e2v_backend, wavs):
    """funasr's extract_features with a padding mask leaks padding: the reason this module exists."""
    model = e2v_backend.model
    alone = np.stack([e2v_backend.forward([w]).embeddings[0] for w in wavs])
    T = max(len(w) for w in wavs)
    x = torch.zeros(len(wavs), T)
    pad = torch.ones(len(wavs), T, dtype=torch.bool)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = torch.from_numpy(w)
        pad[i, : len(w)] = False
    with torch.no_grad():
        x = torch.nn.functional.layer_norm(x, x.shape[1:])
        res = model.extract_features(x, padding_mask=pad)
    feats = res["x"]
    valid = (~res["padding_mask"]).float()[..., None]
    naive = ((feats * valid).sum(1) / valid.sum(1)).numpy()
    assert np.abs(naive - alone).max() > 1e-2


@pytest.mark.parametrize("leak", ["positional_conv", "waveform_norm"])
def test_each_padding_fix_is_needed(e2v_backend, wavs, monkeypatch, leak):
    """Undo one fix at a time: results must then differ (so the parity tests can fail)."""
    alone = np.stack([e2v_backend.forward([w]).embeddings[0] for w in wavs])
    if leak == "positional_conv":
        monkeypatch.setattr(e2v, "_zero_padded_conv_inputs", lambda *a, **k: contextlib.nullcontext())
    else:
        monkeypatch.setattr(e2v, "normalise_waveforms",
                            lambda x, lengths, eps=1e-5: torch.nn.functional.layer_norm(x, x.shape[1:]))
    leaky = e2v_backend.forward(wavs).embeddings
    longest = int(np.argmax([len(w) for w in wavs]))
    others = [i for i in range(len(wavs)) if i != longest]
    assert np.abs(leaky[others] - alone[others]).max() > 1e-3


def test_groupnorm_extractor_mode_parity(tmp_path, wavs):
    """extractor_mode 'default' (GroupNorm over time in conv layer 0) must not leak either."""
    import yaml

    from batchser.models.emotion2vec import Emotion2vecBackend, load_funasr
    from batchser.testmodels import make_emotion2vec_dir

    d = make_emotion2vec_dir(tmp_path / "gn", size="tiny", seed=3)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["model_conf"]["modalities"]["audio"]["extractor_mode"] = "default"
    # rebuild weights for the new layer types, same layout on disk
    from funasr.models.emotion2vec.model import Emotion2vec

    torch.manual_seed(3)
    m = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=9)
    torch.save({"model": m.state_dict()}, d / "model.pt")
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    be = Emotion2vecBackend(str(d))
    assert e2v._channels_last_plan(be.model.modality_encoders["AUDIO"]) is None  # per-utterance path
    ref = load_funasr(str(d), "cpu")
    out = be.forward(wavs[:4])
    for i, w in enumerate(wavs[:4]):
        feats, _ = reference(ref, w, tmp_path)
        np.testing.assert_allclose(out.embeddings[i], feats, atol=2e-5, rtol=0)


def test_embedding_only_model(e2v_nohead_dir, tmp_path, wavs):
    from batchser.models.emotion2vec import Emotion2vecBackend, load_funasr

    be = Emotion2vecBackend(str(e2v_nohead_dir))
    assert be.labels == [] and be.model.proj is None
    out = be.forward(wavs[:3])
    assert out.scores is None
    ref = load_funasr(str(e2v_nohead_dir), "cpu")
    for i, w in enumerate(wavs[:3]):
        p = write_wav(tmp_path / f"nh{i}.wav", w)
        r = ref.generate(str(p), granularity="utterance")[0]
        np.testing.assert_allclose(out.embeddings[i], r["feats"], atol=2e-5, rtol=0)


def test_labels_come_from_tokens_txt(e2v_backend):
    assert e2v_backend.labels == ["angry", "disgusted", "fearful", "happy", "neutral", "other",
                                  "sad", "surprised", "unknown"]


def test_unuse_tokens_are_dropped_like_funasr():
    assert e2v.label_list(["生气/angry", "unuse_1", "<unk>"]) == ["angry", None, "unknown"]


def test_conv_output_lengths_match_real_extractor(e2v_backend):
    spec = e2v_backend.conv_spec
    enc = e2v_backend.model.modality_encoders["AUDIO"]
    for n in [400, 401, 719, 720, 16000, 23457]:
        with torch.no_grad():
            frames = enc.local_encoder(torch.zeros(1, n)).shape[-1]
        assert int(e2v.conv_output_lengths(torch.tensor([n]), spec)[0]) == frames
    assert e2v.min_samples(spec) == 400


def test_channels_last_extractor_is_used_and_equals_funasr(e2v_backend, wavs, monkeypatch):
    """The fast conv extractor (channels-last GEMMs, per utterance in pieces on a CPU) gives the
    frames of funasr's own extractor + projection on each unpadded utterance, at any piece size,
    and the whole-batch form (used on a GPU) gives them too on every valid frame."""
    enc = e2v_backend.model.modality_encoders["AUDIO"]
    parts = e2v._parts(e2v_backend.model)
    steps = e2v._channels_last_plan(enc)
    assert steps is not None  # layer_norm extractor: the parity tests above run the fast path
    T = max(len(w) for w in wavs)
    x = torch.zeros(len(wavs), T)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in wavs])
    flen = e2v.conv_output_lengths(lengths, parts.conv_spec)
    with torch.no_grad():
        refs = [enc.local_features(x[i : i + 1, : len(w)])[0] for i, w in enumerate(wavs)]
        whole = e2v._run_steps(steps, x)
        for m in list(enc.project_features.children())[1:]:
            whole = m(whole)
        for piece in (1, 3, 64):  # 1 and 3 frames: many piece boundaries inside each utterance
            monkeypatch.setattr(e2v, "CPU_CHUNK_FRAMES", piece)
            got = e2v._local_features(parts, x, lengths)
            assert got.shape[:2] == whole.shape[:2]
            for i, ref in enumerate(refs):
                n = int(flen[i])
                assert ref.shape[0] == n
                torch.testing.assert_close(got[i, :n], ref, atol=1e-5, rtol=0)
    for i, ref in enumerate(refs):
        torch.testing.assert_close(whole[i, : int(flen[i])], ref, atol=1e-5, rtol=0)


def test_unknown_extractor_structure_falls_back(e2v_backend, monkeypatch):
    """A block the fast path does not know (here: a conv with padding) -> funasr's own modules."""
    enc = e2v_backend.model.modality_encoders["AUDIO"]
    conv = enc.local_encoder.conv_layers[2][0]
    assert e2v._channels_last_plan(enc) is not None
    monkeypatch.setattr(conv, "padding", (1,))
    assert e2v._channels_last_plan(enc) is None


def test_int8_is_close_to_float32_and_quantises_each_utterance_alone(e2v_dir, e2v_backend, wavs, monkeypatch):
    """--dtype int8: transformer Linear layers become Int8Linear; results stay close to float32, and
    each utterance's activations are quantised over its own valid rows (never padding or batch-mates)."""
    be = e2v.Emotion2vecBackend(str(e2v_dir), dtype="int8")
    n = sum(isinstance(m, e2v.Int8Linear) for m in be.model.modules())
    assert n == 4 * (len(be.model.blocks) + len(e2v._parts(be.model).enc.context_encoder.blocks))
    ref = e2v_backend.forward(wavs)
    got = be.forward(wavs)
    cos = (got.embeddings * ref.embeddings).sum(1) / np.linalg.norm(got.embeddings, axis=1) / np.linalg.norm(
        ref.embeddings, axis=1)
    assert cos.min() > 0.999
    assert np.abs(got.scores - ref.scores).max() < 0.02
    seen = []
    orig = e2v.Int8Linear.forward

    def spy(self, x):
        rows = e2v._UTT_ROWS.get()
        seen.append((tuple(x.shape[:2]), rows))
        return orig(self, x)

    monkeypatch.setattr(e2v.Int8Linear, "forward", spy)
    be.forward(wavs)
    flen = e2v.conv_output_lengths(torch.tensor([len(w) for w in wavs]), be.conv_spec).tolist()
    extra = e2v._parts(be.model).num_extra
    assert seen and all(rows == [f + extra for f in flen] for _, rows in seen)
    # a quantised layer sees each utterance's valid rows only: rows of padding change nothing
    lin = next(m for m in be.model.modules() if isinstance(m, e2v.Int8Linear))
    monkeypatch.setattr(e2v.Int8Linear, "forward", orig)
    x = torch.randn(2, 30, lin.q.in_features)
    token = e2v._UTT_ROWS.set([10, 30])
    try:
        a = lin(x)
        x2 = x.clone()
        x2[0, 10:] = 1e4  # huge values in utterance 0's padding
        b = lin(x2)
    finally:
        e2v._UTT_ROWS.reset(token)
    assert torch.equal(a[0, :10], b[0, :10]) and torch.equal(a[1], b[1])
    assert not torch.equal(lin.q(x2[:1])[0, :10], a[0, :10])  # whole-tensor scale: padding would leak


def test_int8_refused_where_not_supported(tmp_path):
    from batchser.policy import resolve_dtype

    with pytest.raises(ValueError, match="CPU only"):
        resolve_dtype("int8", "cuda")
    assert resolve_dtype("int8", "cpu") == "int8"
    from batchser.models.hf import TransformersBackend
    from batchser.testmodels import make_wav2vec2_classifier_dir

    d = make_wav2vec2_classifier_dir(tmp_path / "w2v2")
    with pytest.raises(ValueError, match="emotion2vec models only"):
        TransformersBackend(str(d), dtype="int8")


def _gpu_wavs():
    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus
    from conftest import RAVDESS

    if (RAVDESS / "wav.scp").exists():
        return [load_utterance(u) for u in read_corpus(RAVDESS, audio_root=str(RAVDESS)).utterances]
    return [speechlike(16000 * (1 + i % 6) + 37 * i, i) for i in range(60)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp32_on_gpu_equals_funasr_per_utterance_on_cpu(tmp_path):
    """Padded batches on the GPU (whole-batch extractor, fp32) == funasr's per-utterance CPU reference."""
    from batchser.models.emotion2vec import Emotion2vecBackend, load_funasr
    from batchser.testmodels import make_emotion2vec_dir

    d = make_emotion2vec_dir(tmp_path / "base", size="base", seed=0)
    wavs = _gpu_wavs()[:24]
    gpu = Emotion2vecBackend(str(d), device="cuda", dtype="float32")
    ref = load_funasr(str(d), "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = [gpu.forward(wavs[i: i + 8]) for i in range(0, len(wavs), 8)]
    emb = np.concatenate([o.embeddings for o in out])
    sc = np.concatenate([o.scores for o in out])
    for i, w in enumerate(wavs):
        feats, scores = reference(ref, w, tmp_path)
        np.testing.assert_allclose(emb[i], feats, atol=1e-4, rtol=0, err_msg=f"utt {i}")
        np.testing.assert_allclose(sc[i], scores, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_gpu_agrees_with_fp32(tmp_path):
    """AMP bf16 vs fp32 on CUDA, full-size (base) random model: embedding cosine > 0.999; the
    argmax is compared only where fp32's top-1/top-2 margin exceeds the largest bf16 score shift
    (random weights give nearly flat scores, so a flip inside that margin says nothing)."""
    from batchser.models.emotion2vec import Emotion2vecBackend
    from batchser.testmodels import make_emotion2vec_dir

    d = make_emotion2vec_dir(tmp_path / "base", size="base", seed=0)
    wavs = _gpu_wavs()
    ref = Emotion2vecBackend(str(d), device="cuda", dtype="float32")
    amp = Emotion2vecBackend(str(d), device="cuda", dtype="bfloat16")
    a = [ref.forward(wavs[i : i + 16]) for i in range(0, len(wavs), 16)]
    b = [amp.forward(wavs[i : i + 16]) for i in range(0, len(wavs), 16)]
    ea, eb = np.concatenate([x.embeddings for x in a]), np.concatenate([x.embeddings for x in b])
    sa, sb = np.concatenate([x.scores for x in a]), np.concatenate([x.scores for x in b])
    cos = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    shift = np.abs(sa - sb).max()
    top2 = np.sort(sa, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * shift
    print(f"bf16 vs fp32: min cosine {cos.min():.6f}, max score diff {shift:.2e}, "
          f"argmax compared on {clear.sum()}/{len(sa)}")
    assert cos.min() > 0.999
    assert (sa.argmax(1)[clear] == sb.argmax(1)[clear]).all()


def test_chunked_attention_equals_funasr_attention(e2v_backend, wavs, monkeypatch):
    """Query-block attention with on-the-fly ALiBi == funasr's AltAttention on the full bias."""
    model = e2v_backend.model
    T = max(len(w) for w in wavs)
    x = torch.zeros(len(wavs), T)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in wavs])
    ref, flen, ref_logits = e2v.batched_forward(model, x, lengths, attention="reference")
    monkeypatch.setattr(e2v, "ATTN_BLOCK_ELEMENTS", 4096)  # force many small query blocks
    got, flen2, logits = e2v.batched_forward(model, x, lengths, attention="chunked")
    assert torch.equal(flen, flen2)
    for i in range(len(wavs)):
        n = int(flen[i])
        torch.testing.assert_close(got[i, :n], ref[i, :n], atol=2e-5, rtol=0)
    torch.testing.assert_close(logits, ref_logits, atol=2e-5, rtol=0)


def test_per_layer_alibi_scale_parity(tmp_path, wavs):
    """Configs with a learned ALiBi scale per layer (sliced per stage by funasr) stay exact."""
    import yaml

    from batchser.models.emotion2vec import Emotion2vecBackend, load_funasr
    from batchser.testmodels import make_emotion2vec_dir

    d = make_emotion2vec_dir(tmp_path / "pl", size="tiny", seed=4)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["model_conf"]["modalities"]["audio"]["learned_alibi_scale_per_layer"] = True
    from funasr.models.emotion2vec.model import Emotion2vec

    torch.manual_seed(4)
    m = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=9)
    with torch.no_grad():
        m.modality_encoders["AUDIO"].alibi_scale.uniform_(0.2, 2.0)
    torch.save({"model": m.state_dict()}, d / "model.pt")
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    be = Emotion2vecBackend(str(d))
    assert be.model.modality_encoders["AUDIO"].alibi_scale.size(0) > 1
    ref = load_funasr(str(d), "cpu")
    out = be.forward(wavs[:4])
    for i, w in enumerate(wavs[:4]):
        feats, scores = reference(ref, w, tmp_path)
        np.testing.assert_allclose(out.embeddings[i], feats, atol=2e-5, rtol=0)
        np.testing.assert_allclose(out.scores[i], scores, atol=2e-6, rtol=0)
