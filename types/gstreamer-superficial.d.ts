/**
 * Hand-written types for gstreamer-superficial 1.7.4, which ships none (its `main` is the
 * compiled `.node` addon). Checked against the addon's C++ sources (Pipeline.cpp,
 * GObjectWrap.cpp) and the runtime on GStreamer 1.22. Load it from ESM with
 * `createRequire(import.meta.url)('gstreamer-superficial')`: a plain `import` fails with
 * ERR_UNKNOWN_FILE_EXTENSION ".node".
 */
declare module 'gstreamer-superficial' {
  /** The first structure of a caps object, e.g. `{name:'video/x-raw', format:'RGB', width:64, framerate:'30/1'}`. */
  export type Caps = { name: string; [field: string]: unknown };
  /** A bus message; `name`/`message` are set for `type === 'error'` only. */
  export interface BusMessage {
    type: string;
    _src_element_name: string;
    name?: string;
    message?: string;
    debug?: string;
    [k: string]: unknown;
  }
  /**
   * Any element: every GObject property is exposed as a JS accessor (ints, strings, booleans,
   * doubles natively; other types, e.g. a GstStructure such as basesink `stats`, as their
   * string serialisation).
   */
  export interface GstElement {
    [property: string]: unknown;
  }
  export interface AppSink extends GstElement {
    /** Pull one sample on a libuv threadpool thread; `null` at EOS or once the pipeline stopped. The Buffer is a copy. */
    pull(cb: (buf: Buffer | null, caps: Caps) => void): void;
  }
  export interface AppSrc extends GstElement {
    /** Push a buffer; `pts` is an optional 8-byte big-endian nanosecond timestamp. */
    push(buf: Buffer, pts?: Buffer): void;
  }
  export class Pipeline {
    /** Runs `gst_parse_launch`; throws (GstError) on a syntax error or unknown element. */
    constructor(description: string);
    play(): void;
    pause(): void;
    /** Sets the state to NULL: a pending `pull()` returns null and `pollBus` stops re-arming. */
    stop(): void;
    sendEOS(): void;
    /** Integer seconds (Int32). */
    seek(positionSeconds: number, flags: number): boolean;
    /** Seconds, or -1 when the query fails. */
    queryPosition(): number;
    queryDuration(): number;
    /** `undefined` when no element has that name. */
    findChild(name: string): GstElement | AppSink | AppSrc | undefined;
    setPad(element: string, attribute: string, padName: string): void;
    forceKeyUnit(element: string, count?: number): boolean;
    /**
     * Call ONCE per pipeline: it re-arms itself after each message until the pipeline is in
     * the NULL state, and each pending poll holds one libuv threadpool thread.
     */
    pollBus(cb: (msg: BusMessage) => void): void;
    /**
     * GstPipeline properties (accessors on the prototype). Note the dashed name: there is no
     * `autoFlushBus`. With `true` (GStreamer's default) going to NULL flushes the bus.
     */
    'auto-flush-bus': boolean;
    delay: number;
    latency: number;
  }
  const gst: { Pipeline: typeof Pipeline };
  export default gst;
}
