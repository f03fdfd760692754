"""Small ONNX graph edits shared by the converters: rename the model's inputs/outputs, name the
symbolic dimensions, attach metadata."""
import onnx


def rename_io(model: onnx.ModelProto, inputs: dict, outputs: dict) -> None:
    mapping = {**inputs, **outputs}
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name in mapping:
            v.name = mapping[v.name]
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name in mapping:
                n.input[i] = mapping[name]
        for i, name in enumerate(n.output):
            if name in mapping:
                n.output[i] = mapping[name]


def name_dims(model: onnx.ModelProto, names: dict) -> None:
    """names: {io_name: [dim names or None to keep]} for symbolic dimensions."""
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name not in names:
            continue
        for d, want in zip(v.type.tensor_type.shape.dim, names[v.name]):
            if want is not None:
                d.Clear()
                if isinstance(want, int):
                    d.dim_value = want
                else:
                    d.dim_param = want
    # Drop stale value_info so shape inference cannot disagree with the renamed dims.
    del model.graph.value_info[:]


def set_metadata(model: onnx.ModelProto, meta: dict, doc: str) -> None:
    del model.metadata_props[:]
    for k, v in sorted(meta.items()):
        p = model.metadata_props.add()
        p.key = k
        p.value = str(v)
    model.doc_string = doc


def pads_to_same_upper(model: onnx.ModelProto) -> int:
    """Replaces every `Pad -> Conv` pair with a Conv using auto_pad=SAME_UPPER.

    efficientnet-lite-pytorch emulates TensorFlow's 'SAME' padding with a ZeroPad2d whose amounts
    are computed once for the construction-time image size (224), then a Conv without padding.
    Exported as is, the graph pads every input like a 224 one, which differs from 'SAME' wherever a
    stride-2 layer sees an odd size (e.g. 7x7 at 112 px input). ONNX's auto_pad=SAME_UPPER is
    TensorFlow's 'SAME' (output = ceil(in / stride), the odd pixel of padding at the end) computed
    from the actual input, so the graph is right for every H, W. Returns the number of Convs changed;
    the caller should still compare the result numerically with the source model.
    """
    from onnx import helper

    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for conv in model.graph.node:
        if conv.op_type != "Conv":
            continue
        pad = producers.get(conv.input[0])
        if pad is None or pad.op_type != "Pad":
            continue
        mode = [a.s.decode() for a in pad.attribute if a.name == "mode"]
        assert mode in ([], ["constant"]), mode
        if len(pad.input) >= 3 and pad.input[2]:
            assert _constant_value(model, pad.input[2]) == 0.0, "only zero padding can become auto_pad"
        assert len(consumers[pad.output[0]]) == 1
        attrs = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
        assert all(v == 0 for a in conv.attribute if a.name == "pads" for v in a.ints)
        del conv.attribute[:]
        conv.attribute.extend(attrs + [helper.make_attribute("auto_pad", "SAME_UPPER")])
        conv.input[0] = pad.input[0]
        changed += 1
    prune(model)
    return changed


def _constant_value(model: onnx.ModelProto, name: str) -> float:
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return float(numpy_helper.to_array(t).reshape(-1)[0])
    for n in model.graph.node:
        if n.op_type == "Constant" and name in n.output:
            return float(numpy_helper.to_array(n.attribute[0].t).reshape(-1)[0])
    raise ValueError(f"pad value {name} is not a constant")


def prune(model: onnx.ModelProto) -> None:
    """Removes nodes and initializers that no graph output depends on."""
    needed = {o.name for o in model.graph.output}
    keep = []
    for n in reversed(model.graph.node):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del model.graph.node[:]
    model.graph.node.extend(keep)
    inits = [t for t in model.graph.initializer if t.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)


def canonical_names(model: onnx.ModelProto) -> None:
    """Renames nodes, intermediate tensors and initializers from their position in the graph.

    tf2onnx numbers the names it generates (const_fold_opt__342, ...) from a counter that differs
    between runs, so two conversions of the same function give different bytes. After this pass
    the file depends only on the graph's structure and values: reruns are byte-identical.
    """
    io = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    mapping = {}
    for i, n in enumerate(model.graph.node):
        n.name = f"{n.op_type}_{i}"
        for j, o in enumerate(n.output):
            if o and o not in io:
                mapping[o] = f"{n.name}:{j}"
    inits = {t.name for t in model.graph.initializer}
    for i, n in enumerate(model.graph.node):
        for j, name in enumerate(n.input):
            if name in inits and name not in mapping:
                mapping[name] = f"{n.name}_in{j}"
    for n in model.graph.node:
        n.input[:] = [mapping.get(x, x) for x in n.input]
        n.output[:] = [mapping.get(x, x) for x in n.output]
    for t in model.graph.initializer:
        t.name = mapping.get(t.name, t.name)
    ordered = sorted(model.graph.initializer, key=lambda t: t.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(ordered)
    del model.graph.value_info[:]
