// Which applications this host offers: those its owner enabled, found on this machine, and passing a
// tiny real job (the self-test). A result is remembered per binary (path, size, modification time),
// so a restart does not render the test frame again until Blender itself changes. A node's first start
// runs its self-tests after the node is up (`deferSelfTests`, then serve.ts's setOffer): joining the
// farm and catching up with it does not wait ~2 s for Blender's test frame.

import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '@libp2p/interface'
import type { Gpu, HostApp } from '../protocol/heartbeat/index.ts'
import { type AppDef, appTitle } from '../runner/apps.ts'
import type { CyclesDevice } from '../runner/argv.ts'
import { type DetectResult, detectApp } from '../runner/execute.ts'
import { featureTag, type SelfTestResult, selfTestApp } from '../runner/selftest.ts'

export interface HostApps {
  readonly apps: HostApp[]
  readonly unavailable: { name: string; reason: string }[]
  /** Cycles devices that passed Blender's self-test, CPU first (empty without Blender). */
  readonly devices: { type: CyclesDevice; secondsPerFrame: number }[]
  /**
   * Tags of what an app's build can do that a job may need, found by its self-test: `blender:oidn`
   * (its Blender denoises with OpenImageDenoise; `submit blender --denoise require` asks for it).
   */
  readonly features: string[]
  /** With deferSelfTests: found apps whose self-test has yet to run (none cached for this binary). */
  readonly deferred: AppDef[]
  /** What detection found of each app (pass it back as `known` when the deferred self-tests run). */
  readonly detected: Map<string, DetectResult>
}

type Cache = Record<string, { key: string; result: SelfTestResult }>

/** Part of each cached result's key: results of an older self-test (without `features`) run again. */
const CACHE_FORMAT = 'selftest-2'

/** Names one binary: path, size, modification time and version (a changed binary is tested again). */
export async function binaryKey(path: string, version: string | null): Promise<string> {
  const st = await stat(path)
  return `${path}:${st.size}:${Math.round(st.mtimeMs)}:${version ?? ''}`
}

export async function detectHostApps(
  defs: readonly AppDef[],
  opts: {
    workDir: string
    cacheFile: string
    log: Logger
    selfTest?: boolean
    deferSelfTests?: boolean
    /** Stops a self-test that runs (the node is stopping): that app then counts as failed. */
    signal?: AbortSignal
    /** Apps already detected (a deferred self-test): not asked for their version again. */
    known?: ReadonlyMap<string, DetectResult>
  },
): Promise<HostApps> {
  const out: HostApps = {
    apps: [],
    unavailable: [],
    devices: [],
    features: [],
    deferred: [],
    detected: new Map(),
  }
  let cache: Cache = {}
  try {
    cache = JSON.parse(await readFile(opts.cacheFile, 'utf8')) as Cache
  } catch {}
  const fresh: Cache = {}
  await mkdir(opts.workDir, { recursive: true })
  for (const def of defs) {
    const d = opts.known?.get(def.name) ?? (await detectApp(def))
    out.detected.set(def.name, d)
    if (!d.available) {
      out.unavailable.push({ name: def.name, reason: (d.reason ?? 'not found').slice(0, 200) })
      continue
    }
    let result: SelfTestResult = { ok: true }
    if (opts.selfTest !== false && def.selfTest !== undefined && d.path !== null) {
      const key = await binaryKey(d.path, d.version).then(
        (k) => `${k}|${CACHE_FORMAT}`,
        () => '',
      )
      const hit = cache[def.name]
      if (hit !== undefined && hit.key === key && key !== '' && hit.result.ok) {
        result = hit.result
      } else if (opts.deferSelfTests === true) {
        out.deferred.push(def)
        continue
      } else {
        const t0 = performance.now()
        result = await selfTestApp(
          def,
          { path: d.path, version: d.version },
          { workDir: opts.workDir, ...(opts.signal === undefined ? {} : { signal: opts.signal }) },
        )
        opts.log(
          'self-test of %s: %s in %d ms',
          def.name,
          result.ok ? 'passed' : result.reason,
          Math.round(performance.now() - t0),
        )
      }
      fresh[def.name] = { key, result }
    }
    if (!result.ok) {
      out.unavailable.push({
        name: def.name,
        reason: `${appTitle(def)} failed its self-test: ${result.reason}`,
      })
      continue
    }
    out.apps.push({ name: def.name, version: d.version })
    for (const dev of result.devices ?? [])
      out.devices.push({ type: dev.type, secondsPerFrame: dev.secondsPerFrame })
    for (const f of result.features ?? []) out.features.push(featureTag(def.name, f))
  }
  // other apps' entries stay (a deferred self-test writes its own later); this call's are replaced
  const mine = new Set(defs.map((d) => d.name))
  const kept = Object.fromEntries(Object.entries(cache).filter(([name]) => !mine.has(name)))
  const tmp = `${opts.cacheFile}.tmp`
  await writeFile(tmp, JSON.stringify({ ...kept, ...fresh }, null, 1)).then(
    () => rename(tmp, opts.cacheFile),
    () => {},
  )
  return out
}

/** A tag per Cycles device, announced with the host's tags: `--device gpu` asks for `device:gpu`. */
export function deviceTags(devices: HostApps['devices']): string[] {
  const tags = new Set<string>()
  for (const d of devices) tags.add(d.type === 'CPU' ? 'device:cpu' : 'device:gpu')
  return [...tags]
}

/**
 * The GPU a host announces when its config lists none: one entry when a Cycles GPU backend passed
 * the self-test (CUDA and OptiX on one card are still one card; its memory is not measured: 0).
 */
export function detectedGpus(devices: HostApps['devices']): Gpu[] {
  const backends = devices.filter((d) => d.type !== 'CPU').map((d) => d.type)
  return backends.length === 0 ? [] : [{ name: `Cycles ${backends.join('/')}`, memoryMb: 0 }]
}

/** The Cycles device a job uses here: the best GPU backend unless it asks for the CPU. */
export function pickDevice(devices: HostApps['devices'], wants: 'cpu' | 'gpu' | 'any'): CyclesDevice {
  if (wants === 'cpu') return 'CPU'
  const gpu = devices.filter((d) => d.type !== 'CPU').sort((a, b) => a.secondsPerFrame - b.secondsPerFrame)[0]
  return gpu?.type ?? 'CPU'
}

export const selfTestCache = (dataDir: string) => join(dataDir, 'selftest.json')
