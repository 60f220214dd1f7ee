#!/usr/bin/env python3
"""Generates ebb's bundled workloads under profiles/workloads/ (committed output; the README's
commands need only the ebb binary, not this script).

  mlp4_train.dtr.log        one training iteration of a 4-layer MLP (fp32, Adam), in the DTR
                            log format (see allocator/dtr_log.h)
  gpt_block_train.trace.jsonl
                            one training iteration of a 2-block GPT decoder (bf16 activations)
                            with activation swap-in on a copy stream, as an ebb alloc trace
                            (see profiles/README.md)

Sizes are realistic for one GPU; op times come from a simple roofline model (110 TFLOP/s for
matmuls, 1.5 TB/s for elementwise ops, 5 us per launch) so that they are deterministic.

Usage: python3 tools/make_workload.py [OUTPUT_DIR]   (default: profiles/workloads)
"""

import json
import os
import sys

LAUNCH_NS = 5_000
MATMUL_FLOPS_PER_NS = 110_000  # 110 TFLOP/s
BYTES_PER_NS = 1_500  # 1.5 TB/s


def matmul_ns(m, n, k):
    return LAUNCH_NS + 2 * m * n * k // MATMUL_FLOPS_PER_NS


def elementwise_ns(*byte_counts):
    return LAUNCH_NS + sum(byte_counts) // BYTES_PER_NS


class DtrWriter:
    """Writes DTR-format lines the way PyTorch's DTR logger does: every value a string except
    MUTATE's index list; a CALL followed by one MEMORY and one ALIAS line per result."""

    def __init__(self):
        self.lines = []
        self.next_name = 1000
        self.size = {}  # handle -> storage bytes

    def _emit(self, **fields):
        self.lines.append(json.dumps(fields, sort_keys=True, separators=(",", ":")))

    def _name(self):
        self.next_name += 1
        return "x%d" % self.next_name

    def annotate(self, what):
        self._emit(INSTRUCTION="ANNOTATE", ANNOTATION=what)

    def constant(self, nbytes):
        """A tensor that exists before the iteration; returned as a fresh handle to it, the way
        PyTorch hands a parameter to the program (COPY, then RELEASE of the original)."""
        name = self._name()
        self._emit(INSTRUCTION="CONSTANT", NAME=name)
        self._emit(INSTRUCTION="MEMORY", MEMORY=str(nbytes), NAME=name)
        self.size[name] = nbytes
        handle = self.copy(name)
        self.release(name)
        return handle

    def copy(self, src):
        dst = self._name()
        self._emit(INSTRUCTION="COPY", DST=dst, SRC=src)
        self.size[dst] = self.size[src]
        return dst

    def release(self, *names):
        for name in names:
            self._emit(INSTRUCTION="RELEASE", NAME=name)

    def call(self, op, args, results, time_ns):
        """results: list of (bytes, alias) with alias -1 (fresh) or an argument index."""
        names = [self._name() for _ in results]
        self._emit(INSTRUCTION="CALL", NAME=op, ARGS=list(args), RESULT=names, TIME=str(time_ns))
        for name, (nbytes, alias) in zip(names, results):
            storage = nbytes if alias < 0 else self.size[args[alias]]
            self._emit(INSTRUCTION="MEMORY", MEMORY=str(storage), NAME=name)
            self._emit(INSTRUCTION="ALIAS", ALIAS=str(alias), NAME=name)
            self.size[name] = storage
        return names if len(names) > 1 else names[0]

    def mutate(self, op, args, mutated, time_ns):
        self._emit(INSTRUCTION="MUTATE", NAME=op, ARGS=list(args), MUTATE=list(mutated),
                   TIME=str(time_ns))


def mlp4_train():
    """A 4-layer MLP 1024 -> 4096 -> 4096 -> 4096 -> 1000, batch 512, fp32, cross-entropy loss,
    Adam: forward, backward, optimizer step."""
    batch, widths, f32 = 512, [1024, 4096, 4096, 4096, 1000], 4
    w = DtrWriter()
    w.annotate("START")
    layers = []
    for i in range(4):
        fan_in, fan_out = widths[i], widths[i + 1]
        weight = w.constant(fan_out * fan_in * f32)
        bias = w.constant(fan_out * f32)
        layers.append((weight, bias, fan_in, fan_out))
    adam = {}
    for weight, bias, _, _ in layers:
        for p in (weight, bias):
            adam[p] = (w.constant(w.size[p]), w.constant(w.size[p]))  # exp_avg, exp_avg_sq
    step = w.constant(8)
    x = w.constant(batch * widths[0] * f32)
    labels = w.constant(batch * 8)

    # Forward. Autograd keeps a handle (a COPY) to each layer's input for the weight gradient
    # and to each ReLU output for the ReLU backward; the program drops its own handles.
    saved = []
    h = x
    for i, (weight, bias, fan_in, fan_out) in enumerate(layers):
        out_bytes = batch * fan_out * f32
        wt = w.call("t", [weight], [(0, 0)], LAUNCH_NS)
        y = w.call("addmm", [bias, h, wt], [(out_bytes, -1)], matmul_ns(batch, fan_out, fan_in))
        h_saved = w.copy(h)
        w.release(wt, h)
        if i < 3:
            a = w.call("relu", [y], [(out_bytes, -1)], elementwise_ns(out_bytes, out_bytes))
            w.release(y)
            saved.append((h_saved, w.copy(a)))
            h = a
        else:
            saved.append((h_saved, None))
            h = y
    logits = h
    logits_bytes = w.size[logits]
    lsm = w.call("_log_softmax", [logits], [(logits_bytes, -1)],
                 elementwise_ns(logits_bytes, logits_bytes))
    w.release(logits)
    loss, total_weight = w.call("nll_loss_forward", [lsm, labels], [(4, -1), (4, -1)],
                                elementwise_ns(logits_bytes))

    w.annotate("BACKWARD")
    g_loss = w.call("ones_like", [loss], [(4, -1)], LAUNCH_NS)
    g_lsm = w.call("nll_loss_backward", [g_loss, lsm, labels, total_weight],
                   [(logits_bytes, -1)], elementwise_ns(logits_bytes))
    w.release(g_loss, total_weight, labels)
    g = w.call("_log_softmax_backward_data", [g_lsm, lsm], [(logits_bytes, -1)],
               elementwise_ns(logits_bytes, logits_bytes, logits_bytes))
    w.release(g_lsm, lsm)

    grads = {}
    for i in reversed(range(4)):
        weight, bias, fan_in, fan_out = layers[i]
        h_in, a_out = saved[i]
        if a_out is not None:  # ReLU backward: g is the gradient of the ReLU output
            g_y = w.call("threshold_backward", [g, a_out], [(w.size[g], -1)],
                         elementwise_ns(w.size[g], w.size[a_out], w.size[g]))
            w.release(g, a_out)
            g = g_y
        gt = w.call("t", [g], [(0, 0)], LAUNCH_NS)
        grads[weight] = w.call("mm", [gt, h_in], [(w.size[weight], -1)],
                               matmul_ns(fan_out, fan_in, batch))
        w.release(gt)
        grads[bias] = w.call("sum", [g], [(w.size[bias], -1)], elementwise_ns(w.size[g]))
        if i > 0:
            g_h = w.call("mm", [g, weight], [(batch * fan_in * f32, -1)],
                         matmul_ns(batch, fan_in, fan_out))
            w.release(g, h_in)
            g = g_h
        else:
            w.release(g, h_in)
    w.release(loss)

    # Adam step, in place, as torch.optim.Adam(foreach=False) runs it.
    w.mutate("add_", [step], [0], LAUNCH_NS)
    for weight, bias, _, _ in layers:
        for p in (weight, bias):
            nbytes = w.size[p]
            m, v = adam[p]
            grad = grads.pop(p)
            w.mutate("mul_", [m], [0], elementwise_ns(nbytes, nbytes))
            w.mutate("add_", [m, grad], [0], elementwise_ns(nbytes, nbytes, nbytes))
            w.mutate("mul_", [v], [0], elementwise_ns(nbytes, nbytes))
            w.mutate("addcmul_", [v, grad, grad], [0], elementwise_ns(nbytes, nbytes, nbytes))
            w.release(grad)
            denom = w.call("sqrt", [v], [(nbytes, -1)], elementwise_ns(nbytes, nbytes))
            w.mutate("add_", [denom], [0], elementwise_ns(nbytes, nbytes))
            w.mutate("addcdiv_", [p, m, denom], [0], elementwise_ns(nbytes, nbytes, nbytes, nbytes))
            w.release(denom)
    return "\n".join(w.lines) + "\n"


class TraceWriter:
    """Writes an ebb alloc trace: ids in allocation order, a clock advanced by op times."""

    def __init__(self):
        self.lines = []
        self.next_id = 0
        self.t_ns = 0
        self.bytes = {}

    def alloc(self, nbytes, tag, stream=0):
        i = self.next_id
        self.next_id += 1
        self.bytes[i] = nbytes
        self.lines.append(json.dumps({"op": "alloc", "id": i, "bytes": nbytes, "stream": stream,
                                      "tag": tag, "t_ns": self.t_ns}, separators=(",", ":")))
        return i

    def free(self, *ids, stream=0):
        for i in ids:
            self.lines.append(json.dumps({"op": "free", "id": i, "stream": stream,
                                          "t_ns": self.t_ns}, separators=(",", ":")))

    def tick(self, ns):
        self.t_ns += ns


def gpt_block_train():
    """Two GPT decoder blocks (d 1024, 16 heads, sequence 512, batch 8), bf16 activations with
    fp32 LayerNorm statistics, forward and backward. The first block's saved activations are
    swapped out after the forward and swapped back in on stream 1 before its backward; each
    swapped-in buffer's last use is on the compute stream 0."""
    b, t, d, heads, bf16, f32 = 8, 512, 1024, 16, 2, 4
    act = b * t * d * bf16  # 8 MiB
    stats = b * t * f32  # 16 KiB
    scores = b * heads * t * t * bf16  # 64 MiB
    tr = TraceWriter()
    x = tr.alloc(act, "embed.out")
    tr.tick(matmul_ns(b * t, d, 1))
    saved = []
    for blk in range(2):
        p = "block%d." % blk
        keep = {}
        keep["ln1.mean"] = tr.alloc(stats, p + "ln1.mean")
        keep["ln1.rstd"] = tr.alloc(stats, p + "ln1.rstd")
        keep["ln1.out"] = tr.alloc(act, p + "ln1.out")
        tr.tick(elementwise_ns(act, act))
        keep["qkv"] = tr.alloc(3 * act, p + "attn.qkv")
        tr.tick(matmul_ns(b * t, 3 * d, d))
        s = tr.alloc(scores, p + "attn.scores")
        tr.tick(matmul_ns(b * heads * t, t, d // heads))
        keep["probs"] = tr.alloc(scores, p + "attn.probs")
        tr.tick(elementwise_ns(scores, scores))
        tr.free(s)
        keep["ctx"] = tr.alloc(act, p + "attn.ctx")
        tr.tick(matmul_ns(b * heads * t, d // heads, t))
        proj = tr.alloc(act, p + "attn.proj")
        tr.tick(matmul_ns(b * t, d, d))
        keep["resid1"] = tr.alloc(act, p + "resid1")
        tr.tick(elementwise_ns(act, act, act))
        tr.free(proj)
        keep["ln2.mean"] = tr.alloc(stats, p + "ln2.mean")
        keep["ln2.rstd"] = tr.alloc(stats, p + "ln2.rstd")
        keep["ln2.out"] = tr.alloc(act, p + "ln2.out")
        tr.tick(elementwise_ns(act, act))
        keep["fc1"] = tr.alloc(4 * act, p + "mlp.fc1")
        tr.tick(matmul_ns(b * t, 4 * d, d))
        keep["gelu"] = tr.alloc(4 * act, p + "mlp.gelu")
        tr.tick(elementwise_ns(4 * act, 4 * act))
        fc2 = tr.alloc(act, p + "mlp.fc2")
        tr.tick(matmul_ns(b * t, d, 4 * d))
        out = tr.alloc(act, p + "out")
        tr.tick(elementwise_ns(act, act, act))
        tr.free(fc2)
        keep["in"] = x
        saved.append(keep)
        x = out
        if blk == 0:  # swap block 0's large activations out to host while block 1 runs
            swapped = [k for k in keep if tr.bytes[keep[k]] >= act]
            tr.free(*[keep[k] for k in swapped])
            for k in swapped:
                keep[k] = None
    logits = tr.alloc(b * t * 8192 * bf16, "lm_head.logits")
    tr.tick(matmul_ns(b * t, 8192, d))
    loss = tr.alloc(4, "loss")
    g = tr.alloc(tr.bytes[logits], "lm_head.grad_logits")
    tr.tick(elementwise_ns(tr.bytes[logits], tr.bytes[logits]))
    tr.free(logits, loss)
    g_x = tr.alloc(act, "lm_head.grad_in")
    tr.tick(matmul_ns(b * t, d, 8192))
    tr.free(g, x)
    g = g_x
    for blk in reversed(range(2)):
        p = "block%d." % blk
        keep = saved[blk]
        if blk == 0:  # swap-in on the copy stream, ahead of this block's backward
            for k in list(keep):
                if keep[k] is None:
                    keep[k] = tr.alloc(
                        {"ln1.out": act, "qkv": 3 * act, "probs": scores, "ctx": act,
                         "resid1": act, "ln2.out": act, "fc1": 4 * act, "gelu": 4 * act,
                         "in": act}[k], p + k + ".swapin", stream=1)
                    tr.tick(LAUNCH_NS)
        # MLP backward
        g_gelu = tr.alloc(4 * act, p + "mlp.grad_gelu")
        tr.tick(matmul_ns(b * t, 4 * d, d))
        tr.free(keep.pop("gelu"))
        g_fc1 = tr.alloc(4 * act, p + "mlp.grad_fc1")
        tr.tick(elementwise_ns(4 * act, 4 * act, 4 * act))
        tr.free(g_gelu, keep.pop("fc1"))
        g_ln2 = tr.alloc(act, p + "ln2.grad_out")
        tr.tick(matmul_ns(b * t, d, 4 * d))
        tr.free(g_fc1, keep.pop("ln2.out"))
        g_r1 = tr.alloc(act, p + "resid1.grad")
        tr.tick(elementwise_ns(act, act, act))
        tr.free(g_ln2, keep.pop("ln2.mean"), keep.pop("ln2.rstd"), keep.pop("resid1"))
        # attention backward
        g_ctx = tr.alloc(act, p + "attn.grad_ctx")
        tr.tick(matmul_ns(b * t, d, d))
        g_probs = tr.alloc(scores, p + "attn.grad_probs")
        tr.tick(matmul_ns(b * heads * t, t, d // heads))
        tr.free(g_ctx, keep.pop("ctx"))
        g_scores = tr.alloc(scores, p + "attn.grad_scores")
        tr.tick(elementwise_ns(scores, scores, scores))
        tr.free(g_probs, keep.pop("probs"))
        g_qkv = tr.alloc(3 * act, p + "attn.grad_qkv")
        tr.tick(2 * matmul_ns(b * heads * t, d // heads, t))
        tr.free(g_scores, keep.pop("qkv"))
        g_ln1 = tr.alloc(act, p + "ln1.grad_out")
        tr.tick(matmul_ns(b * t, d, 3 * d))
        tr.free(g_qkv, keep.pop("ln1.out"))
        g_in = tr.alloc(act, p + "grad_in")
        tr.tick(elementwise_ns(act, act, act, act))
        tr.free(g_ln1, g_r1, keep.pop("ln1.mean"), keep.pop("ln1.rstd"), keep.pop("in"), g)
        assert not keep, keep
        g = g_in
    tr.free(g)
    return "\n".join(tr.lines) + "\n"


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "profiles", "workloads")
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (("mlp4_train.dtr.log", mlp4_train()),
                       ("gpt_block_train.trace.jsonl", gpt_block_train())):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
        print("wrote %s (%d lines)" % (os.path.join(out_dir, name), text.count("\n")))


if __name__ == "__main__":
    main()
