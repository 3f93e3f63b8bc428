import { map, type OperatorFunction } from 'rxjs';
import type { Frame } from '../streams/frame.js';

/**
 * Part ids from an image sequence's file names: `pattern` is applied to the file's base name and
 * its named group `partId` (else its first group) is the id. A file whose name does not match
 * keeps no `partId` (absent stays absent) and is reported.
 *
 * @example
 * ```ts
 * // part-0042_cam1.png -> partId '0042'
 * frames$.pipe(partIdFromFileName(/^part-(?<partId>\d+)_/, { onUnmatched: (f) => unmatched.inc() }));
 * ```
 */
export function partIdFromFileName(pattern: RegExp, opts: { onUnmatched?: (frame: Frame) => void; onMatched?: (frame: Frame) => void } = {}): OperatorFunction<Frame, Frame> {
  return map((f) => {
    const name = f.path?.split(/[\\/]/).pop();
    const m = name !== undefined ? pattern.exec(name) : null;
    const id = m ? (m.groups?.partId ?? m[1]) : undefined;
    if (id === undefined || id === '') {
      opts.onUnmatched?.(f);
      return f;
    }
    opts.onMatched?.(f);
    return { ...f, partId: id };
  });
}
