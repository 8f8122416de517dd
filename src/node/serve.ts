// `openfarm join`: a FarmNode plus its local API, and the detection of the applications this host's
// owner enabled (only those that are really here are announced).

import { randomBytes } from 'node:crypto'
import { constants, existsSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { isAbsolute, join } from 'node:path'
import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { FarmDoc } from '../crdt/farmdoc.ts'
import { atTime, type JobView } from '../crdt/jobview.ts'
import type { TaskView } from '../crdt/reducer.ts'
import type { HostApp, RunningTask, SpeedSource } from '../protocol/heartbeat/index.ts'
import { type AppDef, BUILTIN_APPS, getApp, loadApps } from '../runner/apps.ts'
import { ensurePyCache, pyCacheRoot } from '../runner/blender/pycache.ts'
import { compileJob, type SubmitInput } from '../runner/compile.ts'
import { InvalidSubmitError } from '../runner/errors.ts'
import { whyNoHost } from '../sched/auction.ts'
import { type ApiBackend, ApiServer } from './api.ts'
import { FarmNode, type FarmNodeOptions, type HostView, type Offer } from './farmnode.ts'
import type { PullReport } from './homes.ts'
import { binaryKey, detectedGpus, detectHostApps, deviceTags, pickDevice, selfTestCache } from './hostapps.ts'
import { type HostFlags, loadHostConfig, resolveHostSettings } from './hostconfig.ts'
import { reapOrphans } from './orphans.ts'
import type { OutputHomes } from './outputhomes.ts'
import { DirectoryError, dataPaths, defaultConfigDir, makeDirs } from './paths.ts'
import { toSchedHost } from './schedhost.ts'
import { benchmarkSpeed } from './speed.ts'
import { addSubmittedFiles, logFrames, type SubmitFiles } from './submitfiles.ts'
import { worker } from './worker.ts'

export interface ServeOptions
  extends Omit<FarmNodeOptions, 'apps' | 'execute' | 'worker' | 'host' | 'speed' | 'appsUnavailable'> {
  /** The host config file (--config); absent: the default file, if there is one; null: none. */
  readonly configFile?: string | null
  /** `join`'s flags: they override the config file. */
  readonly flags?: HostFlags
  readonly apiHost?: string
  readonly apiPort?: number
}

export interface RunningNode {
  readonly node: FarmNode
  readonly apiUrl: string
  /** What this host offers now (self-tests of a first start finish after serve() returns). */
  readonly apps: readonly HostApp[]
  /** Enabled applications that failed detection, with the reason (or whose self-test still runs). */
  readonly unavailable: readonly { name: string; reason: string }[]
  /** Settles once every enabled application's self-test has run, and Blender's bytecode cache is built. */
  readonly appsReady: Promise<void>
  /** The bytecode cache (PYTHONPYCACHEPREFIX) the phases of `app` run with, once built. */
  pycache(app: string): string | undefined
  /** Leaves the farm; resolves with the steps of the stop that overran or failed (none, normally). */
  stop(): Promise<string[]>
}

/** Shown for an app whose first self-test runs while the node is already up. */
export const SELF_TEST_RUNNING = 'its self-test is running'

/** Which applications this host runs: the defaults, plus what its owner enabled, minus what they disabled. */
export function enabledApps(
  enable: readonly string[] = [],
  disable: readonly string[] = [],
  all: readonly AppDef[] = BUILTIN_APPS,
): AppDef[] {
  for (const name of [...enable, ...disable]) getApp(name, all) // unknown names fail here, clearly
  return all.filter((a) => (a.enabledByDefault || enable.includes(a.name)) && !disable.includes(a.name))
}

/** The built-in applications, plus the owner's own configs in ~/.config/openfarm/apps/ if there are any. */
export function knownApps(configDir = defaultConfigDir()): AppDef[] {
  const own = join(configDir, 'apps')
  return existsSync(own) ? loadApps([own]) : [...BUILTIN_APPS]
}

/**
 * A job that waits for a file names a path on its submitter's machine, so the submitter's node looks
 * for it (every 2 s) and releases the job when it is there.
 */
function watchFiles(farm: FarmDoc, me: string, log: Logger): ReturnType<typeof setInterval> {
  const timer = setInterval(() => {
    for (const v of farm.views()) {
      const file = v.spec.sched.waitFile
      if (file === null || v.released || v.spec.submittedBy !== me || v.cancelled) continue
      access(file).then(
        () => {
          if (farm.view(v.id)?.released === false) {
            log('%s appeared: releasing %s', file, v.id)
            farm.appendJobEvent(v.id, 'release')
          }
        },
        () => {},
      )
    }
  }, 2_000)
  timer.unref()
  return timer
}

/**
 * A job's per-task progress, which travels in heartbeats only. A host's running list counts for a
 * task only for the task's current attempt and when that host owns it and is not dead: a dead host
 * keeps its last heartbeat (still naming the attempt that was requeued), and a host that lost a
 * task may report its old attempt once more.
 */
export function taskProgress(
  job: string,
  tasks: readonly Pick<TaskView, 'index' | 'attempt' | 'owner'>[],
  hosts: readonly Pick<HostView, 'peer' | 'liveness' | 'running'>[],
): Record<number, Pick<RunningTask, 'progress' | 'frame'>> {
  const current = new Map(tasks.map((t) => [t.index, t]))
  const progress: Record<number, Pick<RunningTask, 'progress' | 'frame'>> = {}
  for (const h of hosts) {
    if (h.liveness === 'dead') continue
    for (const r of h.running) {
      const t = current.get(r.task)
      if (r.job !== job || t === undefined || t.attempt !== r.attempt || t.owner !== h.peer) continue
      progress[r.task] = { progress: r.progress, frame: r.frame }
    }
  }
  return progress
}

/**
 * Why no alive host can run `v`'s queued tasks now (null: one can, or none is queued): a job pinned
 * to a Blender no host has would otherwise sit in QUEUE without a word.
 */
export function noHostFor(v: JobView, hosts: readonly HostView[]): string | null {
  if (!v.tasks.some((t) => t.state === 'QUEUE')) return null
  const alive = hosts.filter((h) => h.liveness === 'alive').map((h) => toSchedHost(h.peer, h))
  return whyNoHost({ app: v.spec.app, ...v.spec.sched.requires }, alive)
}

/** A directory outputs can be written to, made if missing; else InvalidSubmitError naming why. */
async function usableDir(dir: string): Promise<void> {
  try {
    await makeDirs(dir)
    await access(dir, constants.W_OK | constants.X_OK)
  } catch (err) {
    const why = err instanceof DirectoryError ? err.message : `cannot write to ${dir}`
    throw new InvalidSubmitError(`out: ${why}`)
  }
}

/**
 * `openfarm fetch` as API frames: one per output as soon as it is home (or not), then the report. A
 * job's outputs may take minutes to come: the client sees them come, and a client that leaves
 * (`signal`) stops the pull.
 */
export async function* fetchFrames(
  homes: Pick<OutputHomes, 'pullOnce'>,
  job: string,
  dir: string,
  outputs: number,
  opts: { overwrite: boolean; signal: AbortSignal },
): AsyncGenerator<Record<string, unknown>> {
  const { signal } = opts
  const ready: Record<string, unknown>[] = []
  let wake: (() => void) | undefined
  let ended: { report: PullReport } | { error: unknown } | undefined
  homes
    .pullOnce(job, dir, {
      signal,
      overwrite: opts.overwrite,
      onOutcome: (path, o) => {
        ready.push({
          kind: 'file',
          path,
          outcome: o.kind,
          ...(o.kind === 'failed' ? { reason: o.reason } : {}),
        })
        wake?.()
      },
    })
    .then(
      (report) => (ended = { report }),
      (error: unknown) => (ended = { error }),
    )
    .finally(() => wake?.())
  for (;;) {
    while (ready.length > 0) yield ready.shift()!
    if (ended !== undefined) break
    await new Promise<void>((resolve) => {
      wake = resolve
    })
    wake = undefined
  }
  if ('error' in ended) throw ended.error
  yield { kind: 'report', dir, outputs, ...ended.report }
}

export async function serve(opts: ServeOptions): Promise<RunningNode> {
  const log = logger('openfarm:serve')
  const config = opts.configFile === null ? {} : await loadHostConfig(opts.configFile)
  const host = resolveHostSettings(config, opts.flags ?? {}, {
    cores: cpus().length,
    memoryMb: Math.round(totalmem() / 2 ** 20),
    hostname: hostname(),
  })
  const speed: { value: number; source: SpeedSource } =
    host.speed !== null
      ? { value: host.speed, source: 'config' }
      : { value: (await benchmarkSpeed()).speed, source: 'benchmark' }
  log('speed %d (%s)', speed.value, speed.source)
  const all = knownApps()
  const defs = enabledApps(host.apps.enable, host.apps.disable, all)
  const paths = dataPaths(opts.dataDir)
  await reapOrphans(paths.work, log)
  const detectOpts = {
    workDir: paths.work,
    cacheFile: selfTestCache(opts.dataDir),
    log: logger('openfarm:apps'),
  }
  // what is known now (no self-test, or one cached for this binary) is offered from the start
  const found = await detectHostApps(defs, { ...detectOpts, deferSelfTests: true })
  let { apps, devices, features } = found
  let unavailable = [
    ...found.unavailable,
    ...found.deferred.map((d) => ({ name: d.name, reason: SELF_TEST_RUNNING })),
  ]
  // what the heartbeat announces of the apps: at start, and again when deferred self-tests end
  const offer = (): Offer => ({
    apps,
    appsUnavailable: unavailable,
    tags: [...new Set([...host.tags, ...deviceTags(devices), ...features])],
    gpus: host.gpus.length > 0 ? host.gpus : detectedGpus(devices),
  })
  const threads = Math.max(1, Math.floor(cpus().length / Math.max(1, host.slots)))
  // Blender's bytecode cache per app self-tested as Blender, once built (below)
  const pycaches = new Map<string, string>()
  const atStart = offer()
  const node = await FarmNode.start({
    ...opts,
    host: { ...host, tags: atStart.tags, gpus: atStart.gpus },
    speed,
    apps: atStart.apps,
    appsUnavailable: atStart.appsUnavailable,
    worker: (parts) =>
      worker({
        workDir: paths.work,
        apps: defs,
        log: logger('openfarm:worker'),
        files: parts.files,
        logs: parts.logs,
        threads,
        device: (spec) =>
          pickDevice(devices, spec.sched.requires.tags.includes('device:cpu') ? 'cpu' : 'any'),
        pycache: (app) => pycaches.get(app),
      }),
  })
  const { farm } = node
  const backend: ApiBackend = {
    farm,
    info: () => ({
      peerId: node.peerId,
      name: node.name,
      farmId: node.key.farmId(),
      addresses: node.addresses(),
      connected: node.connectedPeers(),
      jobs: farm.views().length,
      loaded: node.loaded,
      dialErrors: node.recentDialErrors(),
      apps,
      unavailable,
    }),
    jobs: () => farm.views().map((v) => atTime(v, Date.now())),
    job: (id) => {
      const jid = farm.resolveJobId(id)
      const view = atTime(farm.view(jid)!, Date.now())
      const home = node.homes.home(jid)
      const hosts = node.hosts()
      return {
        ...view,
        progress: taskProgress(jid, view.tasks, hosts),
        outputs: farm.outputs(jid).length,
        home: home === undefined ? null : { dir: home.dir, ...(home.report ?? {}) },
        noHost: noHostFor(view, hosts),
      }
    },
    noHost: (v) => noHostFor(v, node.hosts()),
    resolve: (id) => farm.resolveJobId(id),
    events: (id) => {
      const job = farm.read(farm.resolveJobId(id))!
      return { tasks: job.tasks, control: job.control, invalid: job.invalid }
    },
    hosts: () => node.hosts(),
    persist: () => node.flush(),
    submit: async (body) => {
      if (typeof body !== 'object' || body === null)
        throw new InvalidSubmitError('submit needs a JSON object')
      const { files, out, overwrite, ...input } = body as SubmitInput & SubmitFiles
      if (out !== undefined && (typeof out !== 'string' || !isAbsolute(out))) {
        throw new InvalidSubmitError('out must be an absolute directory on this machine')
      }
      // made now, so a home the frames could never reach is refused before the job exists
      if (typeof out === 'string') await usableDir(out)
      const id = `j${randomBytes(5).toString('hex')}`
      // a list of job ids (or prefixes); anything else is refused, never read as "none"
      const resolveIds = (field: string, ids: unknown) => {
        if (ids === undefined || ids === null) return []
        if (!Array.isArray(ids) || !ids.every((d) => typeof d === 'string')) {
          throw new InvalidSubmitError(
            `${field} must be a list of job ids, not ${JSON.stringify(ids).slice(0, 80)}`,
          )
        }
        return ids.map((d) => farm.resolveJobId(d))
      }
      const inputs = await addSubmittedFiles(node.blobStore, id, files)
      const spec = compileJob(
        {
          ...input,
          dependsOn: resolveIds('dependsOn', input.dependsOn),
          taskDeps: resolveIds('taskDeps', input.taskDeps),
          inputsFrom: resolveIds('inputsFrom', input.inputsFrom),
          ...(inputs.length > 0 ? { inputs } : {}),
        },
        { id, peer: node.peerId, now: Date.now(), apps: all },
      )
      farm.addJob(spec)
      if (typeof out === 'string') await node.homes.track(spec.id, out, { overwrite: overwrite === true })
      return atTime(farm.view(spec.id)!, Date.now())
    },
    logs: (job, task, o) => logFrames(node, job, task, o),
    fetch: (job, dir, opts) => fetchFrames(node.homes, job, dir, farm.outputs(job).length, opts),
    onChange: (listener) => {
      farm.doc.on('update', listener)
      return () => farm.doc.off('update', listener)
    },
  }
  const watcher = watchFiles(farm, node.peerId, logger('openfarm:conditions'))
  const api = new ApiServer(backend, logger('openfarm:api'))
  let apiUrl: string
  try {
    apiUrl = await api.listen(opts.apiHost ?? '127.0.0.1', opts.apiPort ?? 0, paths.api, node.peerId)
  } catch (err) {
    await node.stop()
    throw err
  }
  log('node %s serving its API on %s', node.peerId, apiUrl)
  // first start: the self-tests run now, while the node is already in the farm
  let stopping = false
  const selfTests = new AbortController()
  const selfTested =
    found.deferred.length === 0
      ? Promise.resolve()
      : detectHostApps(found.deferred, {
          ...detectOpts,
          known: found.detected,
          signal: selfTests.signal,
        }).then(
          (rest) => {
            if (stopping) return
            apps = [...apps, ...rest.apps]
            devices = [...devices, ...rest.devices]
            features = [...features, ...rest.features]
            unavailable = [...found.unavailable, ...rest.unavailable]
            node.setOffer(offer())
          },
          (err: Error) => {
            log.error('self-tests failed to run: %s', err.message)
            if (stopping) return
            const reason = `its self-test could not run: ${err.message}`.slice(0, 200)
            unavailable = unavailable.map((u) => (u.reason === SELF_TEST_RUNNING ? { ...u, reason } : u))
            node.setOffer(offer())
          },
        )
  // then each offered app that is a Blender gets its bytecode cache (built once per binary)
  const appsReady = selfTested.then(async () => {
    for (const def of defs) {
      const bin = found.detected.get(def.name)?.path
      if (
        stopping ||
        bin == null ||
        def.selfTest?.kind !== 'blender' ||
        !apps.some((a) => a.name === def.name)
      )
        continue
      try {
        const key = await binaryKey(bin, found.detected.get(def.name)?.version ?? null)
        const root = join(pyCacheRoot(opts.dataDir), def.name)
        pycaches.set(
          def.name,
          await ensurePyCache({ blender: bin, key, root, log, signal: selfTests.signal }),
        )
      } catch (err) {
        // tasks start Blender as before, compiling its scripts each time
        if (!stopping) log.error('%s runs without a bytecode cache: %s', def.name, (err as Error).message)
      }
    }
  })
  return {
    node,
    apiUrl,
    get apps() {
      return apps
    },
    get unavailable() {
      return unavailable
    },
    appsReady,
    pycache: (app) => pycaches.get(app),
    async stop() {
      // a self-test still running is stopped (its Blender killed), and nothing more is offered
      stopping = true
      selfTests.abort(new Error('node stopping'))
      await appsReady
      clearInterval(watcher)
      await api.close(paths.api)
      return await node.stop()
    },
  }
}
