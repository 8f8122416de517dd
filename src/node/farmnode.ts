// Assembles one peer: the farm document and its store, libp2p with the farm's services, the
// dispatcher and the runner, and the local API. It wires; the logic lives in the modules it wires.

import { mkdir } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import * as Y from 'yjs'
import { FarmDoc } from '../crdt/farmdoc.ts'
import { updateGuard } from '../crdt/guard.ts'
import { DocStore, type LoadReport } from '../crdt/store.ts'
import type {
  AppUnavailable,
  Heartbeat,
  HostApp,
  Liveness,
  SpeedSource,
} from '../protocol/heartbeat/index.ts'
import { BlobStore } from './blobs/store.ts'
import { Dialer, parseBootstrap } from './dialer.ts'
import { Dispatcher } from './dispatcher.ts'
import { type FarmKey, resolveKey } from './farmkey.ts'
import type { Execute, Stager } from './taskrun.ts'

export { NoFarmKeyError, WrongFarmError } from './farmkey.ts'

import { availabilityAt, type HostSettings } from './hostconfig.ts'
import { createFarmLibp2p, type FarmLibp2p, loadOrCreatePeerKey } from './libp2p.ts'
import { LogStore } from './logstore.ts'
import { type WorkerParts, wireFiles } from './nodefiles.ts'
import type { OutputHomes } from './outputhomes.ts'

export type { WorkerParts } from './nodefiles.ts'

import { dataPaths } from './paths.ts'
import { slotFreeIn, toSchedHost } from './schedhost.ts'
import { refineSpeed } from './speed.ts'

/** The clock liveness and task timing use unless a test injects one. */
const monotonic = (): number => performance.now()

/** What a host offers the farm that its self-tests decide. */
export interface Offer {
  apps: readonly HostApp[]
  appsUnavailable: readonly AppUnavailable[]
  tags: readonly string[]
  gpus: HostSettings['gpus']
}

export interface FarmNodeOptions {
  readonly dataDir: string
  /** Required the first time; afterwards read from the data directory. */
  readonly key?: FarmKey
  readonly name?: string
  readonly listen?: readonly string[]
  readonly bootstrap?: readonly string[]
  readonly mdns?: boolean
  /** What this host says about itself (config file + flags + defaults). */
  readonly host: HostSettings
  /** Its measured (or configured) speed, work units per second. */
  readonly speed: { readonly value: number; readonly source: SpeedSource }
  /** What it offers at start; `setOffer` changes it (its self-tests finish after the node is up). */
  readonly apps: readonly HostApp[]
  /** Enabled applications that are not usable here, and why (shown by `openfarm hosts`). */
  readonly appsUnavailable?: readonly AppUnavailable[]
  /** Runs a task (tests); or else */
  readonly execute?: Execute
  /** makes the task runner from the node's files and log store (the real worker). */
  readonly worker?: (parts: WorkerParts) => Execute
  /** How often unneeded blobs are collected (default 10 minutes). */
  readonly gcMs?: number
  readonly heartbeatMs?: number
  readonly suspectAfterMs?: number
  readonly deadAfterMs?: number
  readonly antiEntropyMs?: number
  readonly settleMs?: number
  /**
   * Claim the next task this long before the running one's estimated end (default 2 s, see
   * CLAIM_AHEAD_MS).
   */
  readonly claimAheadMs?: number
  readonly redialMs?: number
  /** Peers to refuse (tests split a farm with it; the set may change while running). */
  readonly blocked?: Set<string>
  readonly now?: () => number
}

/** A host as `openfarm hosts` shows it: what it announced, and how this node sees it. */
export type HostView = Omit<Heartbeat, 'v' | 'seq'> & {
  readonly peer: string
  readonly self: boolean
  readonly liveness: Liveness
  readonly lastSeenMs: number
  /** Left out of this node's auction for now: it won tasks and did not claim them (stalls.ts). */
  readonly leftOut?: boolean
}

export class FarmNode {
  readonly key: FarmKey
  readonly farm: FarmDoc
  readonly libp2p: FarmLibp2p
  readonly loaded: LoadReport
  readonly name: string
  private readonly store: DocStore
  private readonly dispatcher: Dispatcher
  private readonly dialer: Dialer
  /** This node's blobs, its tasks' log lines, and the jobs whose outputs come home here. */
  readonly blobStore: BlobStore
  readonly logStore: LogStore
  readonly homes: OutputHomes
  private readonly gcTimer: ReturnType<typeof setInterval>
  private readonly opts: FarmNodeOptions
  private readonly log: Logger
  private readonly dialErrors: string[] = []
  private readonly describe: () => Omit<Heartbeat, 'v' | 'seq'>
  private readonly offer: Offer

  private constructor(parts: {
    key: FarmKey
    farm: FarmDoc
    libp2p: FarmLibp2p
    store: DocStore
    loaded: LoadReport
    dispatcher: Dispatcher
    dialer: Dialer
    blobStore: BlobStore
    logStore: LogStore
    homes: OutputHomes
    gcTimer: ReturnType<typeof setInterval>
    opts: FarmNodeOptions
    log: Logger
    describe: () => Omit<Heartbeat, 'v' | 'seq'>
    offer: Offer
  }) {
    this.key = parts.key
    this.farm = parts.farm
    this.libp2p = parts.libp2p
    this.store = parts.store
    this.loaded = parts.loaded
    this.dispatcher = parts.dispatcher
    this.dialer = parts.dialer
    this.blobStore = parts.blobStore
    this.logStore = parts.logStore
    this.homes = parts.homes
    this.gcTimer = parts.gcTimer
    this.opts = parts.opts
    this.log = parts.log
    this.describe = parts.describe
    this.offer = parts.offer
    this.name = parts.opts.host.name
  }

  /**
   * What this host offers from now on: its applications (with why others are not offered), device
   * tags and GPUs, as its self-tests found them. Announced at once; the auction sees it next pass.
   */
  setOffer(offer: Partial<Offer>): void {
    Object.assign(this.offer, offer)
    this.libp2p.services.heartbeat.beat()
    this.dispatcher.schedule()
  }

  static async start(opts: FarmNodeOptions): Promise<FarmNode> {
    const paths = dataPaths(opts.dataDir)
    await mkdir(paths.dir, { recursive: true, mode: 0o700 })
    const key = await resolveKey(paths.farmKey, opts.key)
    const log = logger('openfarm:node')
    const privateKey = await loadOrCreatePeerKey(paths.peerKey)
    const doc = new Y.Doc({ gc: true })
    const { store, loaded } = await DocStore.open(paths.db, doc, { log: logger('openfarm:store') })
    const blobStore = await BlobStore.open(paths.blobs)
    // lines reach disk (and live followers) in batches: every 100 ms is live enough, and cheap
    const logStore = await LogStore.open(paths.logs, { flushMs: 100 })
    const closeStores = async () => {
      await Promise.allSettled([store.close(), blobStore.close(), logStore.close()])
    }
    if (loaded.corrupt > 0) log.error('%d corrupt entries in %s were skipped', loaded.corrupt, paths.db)
    const now = opts.now ?? monotonic
    const host = opts.host
    const slots = host.slots
    const speed = { ...opts.speed }
    let dispatcher: Dispatcher | undefined
    // read once: os.cpus() parses /proc/cpuinfo, and the dispatcher asks for this host on every pass
    const cores = cpus().length
    const memoryMb = Math.round(totalmem() / 2 ** 20)
    const offer: Offer = {
      apps: opts.apps,
      appsUnavailable: opts.appsUnavailable ?? [],
      tags: host.tags,
      gpus: host.gpus,
    }
    const describe = (): Omit<Heartbeat, 'v' | 'seq'> => ({
      name: host.name,
      slots,
      free: dispatcher?.freeSlots() ?? 0,
      running: dispatcher?.runningTasks() ?? [],
      cores,
      memoryMb,
      gpus: [...offer.gpus],
      apps: [...offer.apps],
      tags: [...offer.tags],
      speed: speed.value,
      speedSource: speed.source,
      wattsIdle: host.wattsIdle,
      wattsLoaded: host.wattsLoaded,
      price: host.price,
      currency: host.currency,
      availability: availabilityAt(host.availability, new Date()),
      appsUnavailable: [...offer.appsUnavailable],
    })
    const bootstrap = (opts.bootstrap ?? []).map(parseBootstrap)
    let libp2p: FarmLibp2p
    try {
      libp2p = await createFarmLibp2p({
        key,
        privateKey,
        listen: opts.listen ?? ['/ip4/0.0.0.0/tcp/0'],
        doc,
        mdns: opts.mdns ?? true,
        blocked: opts.blocked,
        blobs: blobStore,
        logs: logStore,
        // every update from the network, gossip and sync alike: one that would delete or replace a
        // job or its log is refused (and logged with the peer it came from)
        validateUpdate: updateGuard(doc),
        ...(opts.antiEntropyMs === undefined ? {} : { antiEntropyMs: opts.antiEntropyMs }),
        heartbeat: {
          intervalMs: opts.heartbeatMs ?? 1_000,
          suspectAfterMs: opts.suspectAfterMs ?? 5_000,
          deadAfterMs: opts.deadAfterMs ?? 30_000,
          now,
          describe,
        },
      })
    } catch (err) {
      await closeStores()
      throw err
    }
    const farm = new FarmDoc(doc, {
      peer: libp2p.peerId.toString(),
      onInvalid: (job, error) => log.error('ignored a malformed entry in job %s: %s', job, error),
    })
    const hb = libp2p.services.heartbeat
    const me = libp2p.peerId.toString()
    const files = wireFiles({
      farm,
      blobStore,
      logStore,
      blobService: libp2p.services.blobs,
      homesFile: paths.homes,
      gcMs: opts.gcMs ?? 600_000,
      log,
    })
    const inner = opts.execute ?? opts.worker?.(files.parts)
    if (inner === undefined) throw new TypeError('FarmNode needs `execute` or `worker`')
    // an attempt is known to the Log Router from its start, so `logs --follow` can wait for its lines
    const execute: Execute = (spec, task, attempt, signal, progress, released) => {
      logStore.start({ job: spec.id, task, attempt })
      return inner(spec, task, attempt, signal, progress, released)
    }
    const { homes, maintenance: gc } = files
    await homes.start()
    dispatcher = new Dispatcher({
      farm,
      slots,
      self: () => {
        const d = describe()
        return d.availability?.available === false ? null : toSchedHost(me, d)
      },
      hosts: () => {
        const t = now()
        return hb
          .hostRecords()
          .filter((h) => h.liveness === 'alive' && h.heartbeat.availability?.available !== false)
          .map((h) => ({ ...toSchedHost(h.peer, h.heartbeat), slotFreeIn: slotFreeIn(h, t) }))
      },
      liveness: (peer) => hb.livenessOf(peer),
      execute,
      settleMs: opts.settleMs ?? 50,
      claimAheadMs: opts.claimAheadMs ?? CLAIM_AHEAD_MS,
      deadAfterMs: opts.deadAfterMs ?? 30_000,
      caughtUp: () => {
        const s = libp2p.services.docSync.stats
        return s.syncsInitiated + s.syncsResponded > 0
      },
      connected: () => libp2p.getConnections().length > 0,
      now,
      wallNow: () => Date.now(),
      log: logger('openfarm:dispatcher'),
      onRunningChange: () => hb.beatSoon(),
      ...(isStager(inner) ? { stager: inner } : {}),
      onTimed: (expected, actual) => {
        if (speed.source === 'config') return // the owner said so
        speed.value = refineSpeed(speed.value, { expectedSeconds: expected, actualSeconds: actual })
        speed.source = 'tasks'
      },
    })
    const node: FarmNode = new FarmNode({
      key,
      farm,
      libp2p,
      store,
      loaded,
      dispatcher,
      blobStore,
      logStore,
      homes,
      gcTimer: gc,
      dialer: new Dialer(libp2p, {
        bootstrap,
        log: logger('openfarm:dialer'),
        ...(opts.redialMs === undefined ? {} : { redialMs: opts.redialMs }),
        onDialError: (err) => node.dialErrors.push(err.message),
      }),
      opts,
      log,
      describe,
      offer,
    })
    hb.onHost(() => dispatcher.schedule())
    node.dialer.start()
    dispatcher.start()
    return node
  }

  get peerId(): string {
    return this.libp2p.peerId.toString()
  }

  /** Addresses other machines can use as --bootstrap. */
  addresses(): string[] {
    return this.libp2p.getMultiaddrs().map((a) => a.toString())
  }

  connectedPeers(): string[] {
    return [...new Set(this.libp2p.getConnections().map((c) => c.remotePeer.toString()))]
  }

  /** Dial failures worth telling the user (another farm's peer, unreachable bootstrap). */
  recentDialErrors(): string[] {
    return this.dialErrors.slice(-10)
  }

  hosts(): HostView[] {
    const self: HostView = {
      ...this.describe(),
      peer: this.peerId,
      self: true,
      liveness: 'alive',
      lastSeenMs: 0,
    }
    const now = (this.opts.now ?? monotonic)()
    const leftOut = new Set(this.dispatcher.stalls.leftOut(now))
    const others = this.libp2p.services.heartbeat.hostRecords().map((h): HostView => {
      const { v: _v, seq: _seq, ...announced } = h.heartbeat
      return {
        ...announced,
        peer: h.peer,
        self: false,
        liveness: h.liveness,
        lastSeenMs: Math.round(now - h.receivedAt),
        ...(leftOut.has(h.peer) ? { leftOut: true } : {}),
      }
    })
    return [self, ...others.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))]
  }

  /** Writes what is pending to disk (tests, benchmarks, before a planned kill). */
  flush(): Promise<void> {
    return this.store.flush()
  }

  /**
   * Leaves the farm: hands back running tasks, lets the peers hear of it, closes the stores. Each step
   * has a time limit, so a stop always ends; the steps that overran or failed are returned (and logged).
   */
  async stop(): Promise<string[]> {
    const problems: string[] = []
    const step = async (what: string, work: () => unknown, ms: number): Promise<void> => {
      const problem = await bounded(work, ms)
      if (problem === undefined) return
      problems.push(`${what}: ${problem}`)
      this.log.error('stopping: %s: %s', what, problem)
    }
    this.dialer.stop()
    clearInterval(this.gcTimer)
    await step('outputs coming home', () => this.homes.stop(), STOP_STEP_MS)
    // the task runner kills each process tree: SIGTERM, then SIGKILL after its grace
    await step('running tasks', () => this.dispatcher.stop(), STOP_TASKS_MS)
    // output records still waiting to share an update go now, before the last sync
    await step('output records', () => this.farm.flushOutputs(), STOP_STEP_MS)
    // let the hand-back events of aborted tasks reach the peers before leaving
    await step('doc sync', () => this.libp2p.services.docSync.whenIdle(), STOP_STEP_MS)
    await step('libp2p', () => this.libp2p.stop(), STOP_STEP_MS)
    await step(
      'blob and log stores',
      async () => {
        const closed = await Promise.allSettled([this.blobStore.close(), this.logStore.close()])
        for (const c of closed) if (c.status === 'rejected') throw c.reason
      },
      STOP_STEP_MS,
    )
    await step('replica store', () => this.store.close(), STOP_STEP_MS)
    this.log('stopped')
    return problems
  }
}

/**
 * How long before a running task's estimated end its slot claims the next task (the dispatcher's
 * claimAheadMs). The settle window then runs while the slot is busy, and the next task's inputs are
 * fetched while the running one renders (a large .blend takes seconds). A task shorter than this has
 * its successor claimed in the same update that starts it: one document update per task instead of
 * two (bench:render: 22-26 updates per job instead of 27-28). A task is bound to its host at most this
 * long before its slot frees; the auction places it by the hosts' free times either way.
 */
export const CLAIM_AHEAD_MS = 2_000

/** Most that one step of a node's stop may take. */
const STOP_STEP_MS = 10_000
/** Running tasks get their processes' kill grace (5 s) and some. */
const STOP_TASKS_MS = 15_000

/** Runs `work` for at most `ms`: undefined when it finished, else what went wrong. */
async function bounded(work: () => unknown, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`not done after ${ms} ms; going on`), ms)
  })
  try {
    return await Promise.race([
      Promise.resolve()
        .then(work)
        .then(
          () => undefined,
          (err: unknown) => `failed: ${err instanceof Error ? err.message : String(err)}`,
        ),
      late,
    ])
  } finally {
    clearTimeout(timer)
  }
}

const isStager = (x: object): x is Stager =>
  typeof (x as Partial<Stager>).stage === 'function' && typeof (x as Partial<Stager>).unstage === 'function'
