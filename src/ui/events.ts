/**
 * The client side of the page's event stream (`GET /events`, src/ui/server.ts), for programs that
 * watch a station the way the page does (scripts/ui-load.ts, tests).
 */

/**
 * The `data:` of each server-sent event of a `text/event-stream` body, parsed as JSON (events
 * without data, like the opening `retry:`, are skipped).
 *
 * @example
 * ```ts
 * const res = await fetch('http://127.0.0.1:8080/events');
 * for await (const state of eventData(res.body!)) console.log(state.cameras);
 * ```
 */
export async function* eventData<T = Record<string, unknown>>(body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = ev.split('\n').find((l) => l.startsWith('data: '));
      if (data !== undefined) yield JSON.parse(data.slice(6)) as T;
    }
  }
}
