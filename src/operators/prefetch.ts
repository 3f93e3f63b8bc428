import { Observable } from 'rxjs';

/**
 * A pull-driven source for offline work: item `i` is started (`make(i)`) at most `ahead` items
 * before the consumer has finished item `i - ahead`, and items are emitted strictly in order.
 * The consumer acknowledges each item by calling the `done` function it receives, which is how
 * a slow stage (the train step) holds the producers back: RxJS has no backpressure of its own.
 *
 * @example
 * // Prepare two batches ahead of the train step, in order, never more.
 * prefetch(batches.length, (i) => prepareBatch(batches[i]), 2).pipe(
 *   concatMap(async ({ value, done }) => { await trainer.step(value); done(); }),
 * );
 */
export function prefetch<T>(count: number, make: (index: number) => Promise<T>, ahead: number): Observable<{ index: number; value: T; done: () => void }> {
  return new Observable((subscriber) => {
    const started = new Map<number, Promise<T>>();
    let nextToStart = 0;
    let nextToEmit = 0;
    let acknowledged = 0;
    let closed = false;

    const startMore = (): void => {
      while (!closed && nextToStart < count && nextToStart < acknowledged + ahead) {
        const i = nextToStart++;
        const p = make(i);
        p.catch(() => undefined); // surfaced in order by emitNext
        started.set(i, p);
      }
    };
    const emitNext = (): void => {
      if (closed) return;
      if (nextToEmit >= count) {
        subscriber.complete();
        return;
      }
      const i = nextToEmit;
      const p = started.get(i);
      if (!p) return;
      p.then(
        (value) => {
          if (closed) return;
          started.delete(i);
          nextToEmit++;
          let acked = false;
          subscriber.next({
            index: i,
            value,
            done: () => {
              if (acked) return;
              acked = true;
              acknowledged++;
              startMore();
              emitNext();
            },
          });
        },
        (err: unknown) => {
          if (!closed) subscriber.error(err);
        },
      );
    };
    startMore();
    emitNext();
    return () => {
      closed = true;
    };
  });
}
