/**
 * A small ONNX graph builder that records what it emits, so a graph can be differentiated
 * (src/model/onnx/autodiff.ts) and serialised (`toModel`). Pure: no onnxruntime, no I/O.
 *
 * Every value has a name and a shape (`Dim[]`: numbers, or a symbol such as 'N' for a dynamic
 * batch). The op helpers compute output shapes for the ops fairline uses, which is what lets
 * the vector-Jacobian rules un-broadcast and reshape without runtime `Shape` ops where the
 * shape is static.
 *
 * Differentiable ops go on the **tape** (one entry per op, possibly several ONNX nodes for a
 * composite op such as training-mode BatchNorm + ReLU). Nodes emitted while `recording` is
 * false (backward passes, optimiser updates, constant plumbing) are not taped.
 *
 * @example
 * const g = new Graph({ opset: 18 });
 * const x = g.input('x', ['N', 3]);
 * const y = g.op('Relu', [x]);
 * g.output(y, 'y');
 * const bytes = g.toModel({ name: 'relu' });
 */
import onnxPkg from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { ModelError } from '../../errors.js';

const { onnx } = onnxPkg;

/** A dimension: a size, or a symbolic name for a size known only at run time. */
export type Dim = number | string;

/** Attribute values the builder understands (numbers are floats unless listed in `intAttrs`). */
export type AttrValue = number | number[] | string | { ints: number[] } | { int: number } | { floats: number[] } | { graph: OnnxTypes.IGraphProto };

/** One differentiable op on the tape. */
export interface TapeEntry {
  type: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  /** Values the op's vector-Jacobian rule needs beyond inputs/outputs (composite ops). */
  saved: Record<string, string>;
  /** Static facts the rule needs that are inputs of the ONNX node (e.g. reduction axes). */
  meta: Record<string, unknown>;
}

const A = onnx.AttributeProto.AttributeType;
const T = onnx.TensorProto.DataType;

/** Attributes that are integers in the ONNX spec (everything else numeric is a float). */
const INT_ATTRS = new Set([
  'axis', 'keepdims', 'group', 'kernel_shape', 'pads', 'strides', 'dilations', 'perm', 'to', 'transA', 'transB',
  'num_outputs', 'noop_with_empty_axes', 'allowzero', 'exclude_outside', 'ceil_mode', 'storage_order', 'select_last_index',
  'channels_last', 'activation_params_int', 'num_scan_inputs',
]);

function attribute(name: string, v: AttrValue): OnnxTypes.IAttributeProto {
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return INT_ATTRS.has(name) ? { name, type: A.INTS, ints: v } : { name, type: A.FLOATS, floats: v };
  if (typeof v === 'object' && 'ints' in v) return { name, type: A.INTS, ints: v.ints };
  if (typeof v === 'object' && 'floats' in v) return { name, type: A.FLOATS, floats: v.floats };
  if (typeof v === 'object' && 'int' in v) return { name, type: A.INT, i: v.int };
  if (typeof v === 'object' && 'graph' in v) return { name, type: A.GRAPH, g: v.graph };
  return INT_ATTRS.has(name) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A float32 or int64 tensor as a TensorProto with little-endian raw_data. */
export function tensorProto(name: string, dims: number[], data: Float32Array | BigInt64Array): OnnxTypes.ITensorProto {
  let raw: Uint8Array;
  if (LITTLE_ENDIAN) raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else {
    raw = new Uint8Array(data.byteLength);
    const dv = new DataView(raw.buffer);
    if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i]!, true);
    else for (let i = 0; i < data.length; i++) dv.setBigInt64(i * 8, data[i]!, true);
  }
  return { name, dims, dataType: data instanceof Float32Array ? T.FLOAT : T.INT64, rawData: raw };
}

/** IR version that goes with an opset (onnx releases 1.8..1.16). */
export function irVersionFor(opset: number): number {
  return opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

const numel = (s: readonly Dim[]): number | undefined =>
  s.every((d): d is number => typeof d === 'number') ? s.reduce<number>((a, b) => a * (b as number), 1) : undefined;

/** Broadcast two shapes (numpy rules); symbols broadcast against 1 or themselves. */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x === y || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else throw new ModelError('bad_model', `cannot broadcast [${a.join(',')}] with [${b.join(',')}]`);
  }
  return out;
}

/** Options of a {@link Graph}. */
export interface GraphOptions {
  /** Default-domain opset (default 18: ReduceMean / Split take axes / sizes as inputs). */
  opset?: number;
  /**
   * Prefix of every generated value name. A subgraph (the body of a Scan, see
   * {@link Graph.toGraphProto}) needs one: ONNX forbids a body to reuse a name of its enclosing graph.
   */
  prefix?: string;
}

/** The builder. See the module doc. */
export class Graph {
  readonly opset: number;
  readonly prefix: string;
  readonly nodes: OnnxTypes.INodeProto[] = [];
  readonly initializers: OnnxTypes.ITensorProto[] = [];
  readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  readonly tape: TapeEntry[] = [];
  readonly shapes = new Map<string, Dim[]>();
  /** Extra operator domains used (e.g. 'com.microsoft' -> 1). */
  readonly domains = new Map<string, number>();
  /** While false, emitted nodes are not recorded on the tape. */
  recording = true;
  private counter = 0;
  private readonly constCache = new Map<string, string>();
  private readonly used = new Set<string>();

  constructor(opts: GraphOptions = {}) {
    this.opset = opts.opset ?? 18;
    this.prefix = opts.prefix ?? '';
  }

  /** A fresh value name derived from `hint`. */
  fresh(hint: string): string {
    hint = this.prefix + hint;
    let name = hint;
    while (this.used.has(name)) name = `${hint}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  shape(value: string): Dim[] {
    const s = this.shapes.get(value);
    if (!s) throw new ModelError('bad_model', `graph value '${value}' has no known shape`);
    return s;
  }

  /** Declare a float32 graph input. */
  input(name: string, shape: Dim[]): string {
    if (this.used.has(name)) throw new ModelError('bad_model', `graph input name '${name}' is taken`);
    this.used.add(name);
    this.shapes.set(name, [...shape]);
    this.inputs.push(valueInfo(name, shape, T.FLOAT));
    return name;
  }

  /**
   * Mark `value` as a graph output named `name`. The producing node's output is renamed
   * (an Identity on a graph output would copy the tensor); a graph input or initializer gets an
   * Identity.
   */
  output(value: string, name = value): string {
    if (name !== value) {
      const producer = this.nodes.find((n) => n.output?.includes(value));
      if (producer && !this.outputs.some((o) => o.name === value) && !this.used.has(name)) {
        this.rename(value, name);
        value = name;
      } else {
        this.used.add(name);
        this.nodes.push({ opType: 'Identity', input: [value], output: [name], name });
        this.shapes.set(name, this.shape(value));
        value = name;
      }
    }
    this.outputs.push(valueInfo(value, this.shape(value), T.FLOAT));
    return value;
  }

  /** A float32 initializer (a constant of the graph). Small identical constants are shared. */
  constant(data: Float32Array | number[], shape: number[], hint = 'const'): string {
    const arr = data instanceof Float32Array ? data : Float32Array.from(data);
    const key = arr.length <= 16 ? `f:${shape.join(',')}:${Array.from(arr).join(',')}` : undefined;
    if (key && this.constCache.has(key)) return this.constCache.get(key)!;
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, shape, arr));
    this.shapes.set(name, [...shape]);
    if (key) this.constCache.set(key, name);
    return name;
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    return this.constant([v], [], `c_${String(v).replace(/[^0-9a-z]/gi, '_')}`);
  }

  /** An int64 constant (axes, shapes, sizes). */
  int64(values: number[], hint = 'i64'): string {
    const key = `i:${values.join(',')}`;
    if (this.constCache.has(key)) return this.constCache.get(key)!;
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, [values.length], BigInt64Array.from(values.map((v) => BigInt(v)))));
    this.shapes.set(name, [values.length]);
    this.constCache.set(key, name);
    return name;
  }

  /**
   * Emit one ONNX node. `shapes` gives the output shapes (one per output). Recorded on the tape
   * when `recording` is on and `tape` is not false.
   */
  node(
    opType: string,
    inputs: string[],
    shapes: Dim[][],
    attrs: Record<string, AttrValue> = {},
    opts: { domain?: string; hint?: string; tape?: boolean; meta?: Record<string, unknown> } = {},
  ): string[] {
    const outputs = shapes.map((s, i) => {
      const name = this.fresh(opts.hint ?? (shapes.length > 1 ? `${opType.toLowerCase()}_${i}` : opType.toLowerCase()));
      this.shapes.set(name, [...s]);
      return name;
    });
    if (opts.domain) this.domains.set(opts.domain, 1);
    this.nodes.push({
      opType,
      domain: opts.domain,
      input: inputs,
      output: outputs,
      name: outputs[0],
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    if (this.recording && opts.tape !== false) this.tape.push({ type: opType, inputs: [...inputs], outputs, attrs, saved: {}, meta: opts.meta ?? {} });
    return outputs;
  }

  /** Emit a one-output node (see {@link node}). */
  op(opType: string, inputs: string[], shape?: Dim[], attrs: Record<string, AttrValue> = {}, meta?: Record<string, unknown>): string {
    const s = shape ?? inferShape(this, opType, inputs, attrs);
    return this.node(opType, inputs, [s], attrs, { meta })[0]!;
  }

  /**
   * Record a composite op: `emit` builds its forward out of any nodes (not taped) and returns
   * its outputs plus values its rule needs; one tape entry of `type` stands for all of them.
   */
  composite(type: string, inputs: string[], attrs: Record<string, AttrValue>, emit: () => { outputs: string[]; saved?: Record<string, string> }): string[] {
    const was = this.recording;
    this.recording = false;
    let res: { outputs: string[]; saved?: Record<string, string> };
    try {
      res = emit();
    } finally {
      this.recording = was;
    }
    if (this.recording) this.tape.push({ type, inputs: [...inputs], outputs: res.outputs, attrs, saved: res.saved ?? {}, meta: {} });
    return res.outputs;
  }

  /** Run `fn` with recording off (backward passes, optimiser updates). */
  untaped<R>(fn: () => R): R {
    const was = this.recording;
    this.recording = false;
    try {
      return fn();
    } finally {
      this.recording = was;
    }
  }

  /**
   * This graph as a GraphProto, for a graph-valued attribute (the `body` of a Scan or Loop).
   * Its opset and extra domains are the enclosing model's: build it with the same opset.
   */
  toGraphProto(name: string): OnnxTypes.IGraphProto {
    return { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs };
  }

  /** Serialise as a ModelProto. */
  toModel(meta: { name: string; doc?: string; producerVersion?: string; props?: Record<string, string> }): Uint8Array {
    const model: OnnxTypes.IModelProto = {
      irVersion: irVersionFor(this.opset),
      opsetImport: [{ domain: '', version: this.opset }, ...[...this.domains].map(([domain, version]) => ({ domain, version }))],
      producerName: 'fairline',
      producerVersion: meta.producerVersion ?? '0.1.0',
      docString: meta.doc,
      metadataProps: Object.entries(meta.props ?? {}).map(([key, value]) => ({ key, value })),
      graph: this.toGraphProto(meta.name),
    };
    return onnx.ModelProto.encode(model).finish();
  }

  private rename(from: string, to: string): void {
    this.used.add(to);
    for (const n of this.nodes) {
      n.output = n.output!.map((o) => (o === from ? to : o));
      n.input = n.input!.map((i) => (i === from ? to : i));
      if (n.name === from) n.name = to;
    }
    for (const e of this.tape) {
      e.outputs = e.outputs.map((o) => (o === from ? to : o));
      e.inputs = e.inputs.map((i) => (i === from ? to : i));
      for (const k of Object.keys(e.saved)) if (e.saved[k] === from) e.saved[k] = to;
    }
    this.shapes.set(to, this.shape(from));
  }
}

function valueInfo(name: string, shape: readonly Dim[], elemType: number): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Where', 'Greater', 'Less', 'Equal', 'Pow', 'Max', 'Min']);
const UNARY = new Set(['Relu', 'Neg', 'Sqrt', 'Reciprocal', 'Identity', 'Abs', 'Exp', 'Log', 'Sigmoid', 'Cast']);

/** Output shape of the ops fairline's graphs use; anything else must pass its shape. */
function inferShape(g: Graph, opType: string, inputs: string[], attrs: Record<string, AttrValue>): Dim[] {
  if (ELEMENTWISE.has(opType)) return inputs.map((i) => g.shape(i)).reduce((a, b) => broadcastShapes(a, b));
  if (UNARY.has(opType)) return [...g.shape(inputs[0]!)];
  if (opType === 'Transpose') {
    const s = g.shape(inputs[0]!);
    return (attrs.perm as number[]).map((p) => s[p]!);
  }
  if (opType === 'Conv') {
    const [n, , h, w] = g.shape(inputs[0]!);
    const ws = g.shape(inputs[1]!);
    const pads = (attrs.pads as number[] | undefined) ?? [0, 0, 0, 0];
    const out = (d: Dim, k: Dim, p0: number, p1: number): Dim => (typeof d === 'number' ? d + p0 + p1 - (k as number) + 1 : d);
    return [n!, ws[0]!, out(h!, ws[2]!, pads[0]!, pads[2]!), out(w!, ws[3]!, pads[1]!, pads[3]!)];
  }
  if (opType === 'MatMul') {
    const a = g.shape(inputs[0]!), b = g.shape(inputs[1]!);
    const batch = broadcastShapes(a.slice(0, -2), b.slice(0, -2));
    return [...batch, a[a.length - 2]!, b[b.length - 1]!];
  }
  throw new ModelError('bad_model', `graph builder: give the output shape of ${opType}`);
}

/** Static element count of a shape, or undefined when a dimension is symbolic. */
export function staticSize(shape: readonly Dim[]): number | undefined {
  return numel(shape);
}
