// `openfarm join`: a FarmNode plus its local API, and the detection of the applications this host's
// owner enabled (only those that are really here are announced).

import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import type { HostApp } from '../protocol/heartbeat/index.ts'
import { type AppDef, BUILTIN_APPS, getApp } from '../runner/apps.ts'
import { compileJob, type SubmitInput } from '../runner/compile.ts'
import { InvalidSubmitError } from '../runner/errors.ts'
import { detectApp } from '../runner/execute.ts'
import { type ApiBackend, ApiServer } from './api.ts'
import { FarmNode, type FarmNodeOptions } from './farmnode.ts'
import { dataPaths } from './paths.ts'
import { worker } from './worker.ts'

export interface ServeOptions extends Omit<FarmNodeOptions, 'apps' | 'execute'> {
  /** Applications to enable beyond those on by default. */
  readonly enable?: readonly string[]
  /** Applications to turn off. */
  readonly disable?: readonly string[]
  readonly apiHost?: string
  readonly apiPort?: number
}

export interface RunningNode {
  readonly node: FarmNode
  readonly apiUrl: string
  readonly apps: readonly HostApp[]
  /** Enabled applications that failed detection, with the reason. */
  readonly unavailable: readonly { name: string; reason: string }[]
  stop(): Promise<void>
}

/** Which applications this host runs: the defaults, plus what its owner enabled, minus what they disabled. */
export function enabledApps(enable: readonly string[] = [], disable: readonly string[] = []): AppDef[] {
  for (const name of [...enable, ...disable]) getApp(name) // unknown names fail here, clearly
  return BUILTIN_APPS.filter(
    (a) => (a.enabledByDefault || enable.includes(a.name)) && !disable.includes(a.name),
  )
}

export async function serve(opts: ServeOptions): Promise<RunningNode> {
  const log = logger('openfarm:serve')
  const defs = enabledApps(opts.enable, opts.disable)
  const apps: HostApp[] = []
  const unavailable: { name: string; reason: string }[] = []
  for (const def of defs) {
    const d = await detectApp(def)
    if (d.available) apps.push({ name: def.name, version: d.version })
    else unavailable.push({ name: def.name, reason: d.reason ?? 'not found' })
  }
  const paths = dataPaths(opts.dataDir)
  const node = await FarmNode.start({
    ...opts,
    apps,
    execute: worker({ workDir: paths.work, apps: defs, log: logger('openfarm:worker') }),
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
      jobs: farm.jobIds().length,
      loaded: node.loaded,
      dialErrors: node.recentDialErrors(),
      apps,
      unavailable,
    }),
    jobs: () => farm.views(),
    job: (id) => farm.view(farm.resolveJobId(id))!,
    resolve: (id) => farm.resolveJobId(id),
    hosts: () => node.hosts(),
    persist: () => node.flush(),
    submit: (body) => {
      if (typeof body !== 'object' || body === null)
        throw new InvalidSubmitError('submit needs a JSON object')
      const input = body as SubmitInput
      const dependsOn = (input.dependsOn ?? []).map((d) => farm.resolveJobId(String(d)))
      const spec = compileJob(
        { ...input, dependsOn },
        { id: `j${randomBytes(5).toString('hex')}`, peer: node.peerId, now: Date.now() },
      )
      farm.addJob(spec)
      return farm.view(spec.id)!
    },
    onChange: (listener) => {
      farm.doc.on('update', listener)
      return () => farm.doc.off('update', listener)
    },
  }
  const api = new ApiServer(backend, logger('openfarm:api'))
  let apiUrl: string
  try {
    apiUrl = await api.listen(opts.apiHost ?? '127.0.0.1', opts.apiPort ?? 0, paths.api, node.peerId)
  } catch (err) {
    await node.stop()
    throw err
  }
  log('node %s serving its API on %s', node.peerId, apiUrl)
  return {
    node,
    apiUrl,
    apps,
    unavailable,
    async stop() {
      await api.close(paths.api)
      await node.stop()
    },
  }
}
