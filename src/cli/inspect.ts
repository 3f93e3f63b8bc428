/**
 * `fairline inspect --config FILE`: run a station (src/runtime/station.ts) until SIGINT/SIGTERM
 * or until every source has ended. Everything that can be checked is checked before the first
 * frame: the config (all problems at once), the model artefact (checksums, spec, threshold),
 * the metrics port and the NATS options; any failure exits non-zero with the reason.
 *
 * Exit codes: 0 after a graceful stop; 1 when a camera failed; 2 for a configuration, model or
 * backend error at start (printed by src/cli/main.ts).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { loadConfig, parseListen } from '../config.js';
import { checkStation, formatCheck } from '../runtime/check.js';
import { formatDropped } from '../runtime/replay.js';
import { startStation, type StationSummary } from '../runtime/station.js';
import { backendOptions, intOption, log } from './common.js';

export { backendOptions };

/**
 * Whether the config file has a `nats` section. The validated config always carries NATS
 * defaults, so "no NATS configured" (verdicts on stdout) is read from the file itself.
 */
export function configMentionsNats(file: string): boolean {
  try {
    const raw = parseYaml(readFileSync(file, 'utf8')) as unknown;
    return typeof raw === 'object' && raw !== null && 'nats' in raw;
  } catch {
    return true; // loadConfig reports the real problem
  }
}

/** `--ui ADDR`: a listen address (`127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:8080` or a port). */
export function listenOption(name: string): (v: string) => { host: string; port: number } {
  return (v) => {
    const l = parseListen(v);
    if (!l) throw new InvalidArgumentError(`${name} must be host:port (127.0.0.1:8080, [::1]:8080) or a port, got '${v}'`);
    return l;
  };
}

/** One line per camera for the log. */
export function formatSummary(s: StationSummary): string {
  const cams = Object.entries(s.cameras).map(
    ([id, c]) =>
      `${id}: ${c.frames} frames, ${c.verdicts.pass} pass, ${c.verdicts.reject} reject, ${c.verdicts.error} error, ${formatDropped(c.dropped)}` +
      (c.error ? ` (source failed after ${c.frames} frames: ${c.error})` : ''),
  );
  const pub = s.published ? `; NATS: ${s.published.published} published, ${s.published.pending} pending in spool` : '';
  return `stopped (${s.reason}) after ${s.seconds.toFixed(1)} s; ${cams.join('; ')}${s.unfinished ? `; ${s.unfinished} frame(s) abandoned` : ''}${pub}`;
}

interface InspectCliOptions {
  config: string;
  sink?: 'nats' | 'stdout';
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  check: boolean;
  probe: boolean;
  probeTimeout: number;
  drainTimeout: number;
  ui?: { host: string; port: number };
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('run the inspection station of a config file: cameras -> FAIR -> verdicts on NATS')
    .requiredOption('--config <file>', 'station config (YAML or JSON; see deploy/fairline.example.yaml)')
    .addOption(new Option('--sink <kind>', 'where verdicts go (default: nats when the config has a nats section, else stdout)').choices(['nats', 'stdout']))
    .addOption(new Option('--backend <name>', 'override the config backend').choices(['auto', 'tensorflow', 'wasm', 'cpu']))
    .option('--check', 'run every start-up check (config, model and expect, thresholds, ports, NATS, a first frame from each camera), print each, then exit: 0 when none failed', false)
    .option('--no-probe', 'with --check: do not open the cameras (e.g. while a station uses them)')
    .option('--probe-timeout <ms>', 'with --check: longest wait for a camera\'s first frame', intOption('--probe-timeout'), 10000)
    .option('--drain-timeout <ms>', 'longest wait for in-flight frames on stop', (v) => Number(v), 20000)
    .option('--ui <addr>', "serve the operator page at this address (host:port or a port; 127.0.0.1 unless a host is given); overrides the config's ui.listen", listenOption('--ui'))
    .action(async (o: InspectCliOptions) => {
      const config = await loadConfig(o.config);
      if (o.backend) config.backend = o.backend;
      if (o.ui) config.ui = { ...config.ui, listen: o.ui };
      const sink = o.sink ?? (configMentionsNats(o.config) ? 'nats' : 'stdout');
      if (o.check) {
        const results = await checkStation(config, { sink, probeCameras: o.probe, probeTimeoutMs: o.probeTimeout, log });
        log(formatCheck(o.config, results));
        process.exitCode = results.some((r) => r.status === 'fail') ? 1 : 0;
        // Probed GStreamer pipelines and onnxruntime threads may keep the loop alive.
        setTimeout(() => process.exit(process.exitCode ?? 0), 500).unref();
        return;
      }
      // SIGHUP re-reads the file (with the same --backend / --ui overrides) and swaps changed models.
      const reloadConfig = async () => {
        const next = await loadConfig(o.config);
        if (o.backend) next.backend = o.backend;
        return next;
      };
      const station = await startStation({ config, sink, handleSignals: true, reloadConfig, drainTimeoutMs: o.drainTimeout, log });
      const summary = await station.done;
      log(formatSummary(summary));
      process.exitCode = summary.failed ? 1 : 0;
      // Native handles (GStreamer, onnxruntime threads) may keep the loop alive after a clean stop.
      setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
    });
}
