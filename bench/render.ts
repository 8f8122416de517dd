// bench:render — what the farm adds on top of Blender. The same 48 frames of the test scene in chunks
// of 4 are rendered four ways on this machine:
//   farm:   a 3-node farm on loopback (real libp2p; the submitting peer renders nothing, the two others
//           one chunk at a time each), from the submit until the last frame is home, hash-checked,
//           and the job is DONE (its last Blender has quit, as the loop's has when it ends);
//   loop:   a shell loop running the same chunks as plain `blender -b` processes, two at a time, with
//           the same threads per process (xargs -P 2);
//   cached loop: the same loop with Blender started as the farm's workers start it, reading its
//           scripts' bytecode from the cache a worker built (runner/blender/pycache.ts): about 0.3 s
//           less start-up per process. Farm / loop is what a user sees; farm / cached loop is what
//           the farm's own work adds;
//   single: one `blender -b -a` process for all 48 frames (what per-task start-up costs).
// The loops and the farm take turns, --rounds times (default 7), each round a new job on the same
// farm (whose idle nodes stay up during the loops, as they did before rounds), the order rotating
// from round to round (a machine whose speed drifts during the run favours none); the figures are
// the medians. This machine's speed moves by 10-30% within minutes (the
// same loop took 7.6 s and 10.3 s in one run; 5-round runs of one commit gave 1.007 to 1.11): the
// table also shows each round's own farm / loop and the median of those paired ratios, and where the
// cores went (the nodes' CPU, and the Blender processes', in the farm and in the loop). And the gap
// between one task's end and the next one's start on a worker, as the workers' log stores saw it,
// and the farm's own latency before a job's first task starts and after its last one ends, and the
// document updates the peers publish per job.
// Prints a table, then one JSON object as the last line.

import { execFile } from 'node:child_process'
import { readFileSync, watch } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ApiClient } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import { planSceneFiles } from '../src/node/layout.ts'
import type { RunningNode } from '../src/node/serve.ts'
import { inspectBlend } from '../src/runner/blender/inspect.ts'
import { pyCacheEnv } from '../src/runner/blender/pycache.ts'
import { launcherPid } from '../src/runner/launch.ts'
import { makeTestScene } from '../test/fixtures/blender/make-scene.ts'
import {
  addrOf,
  Cleanup,
  fmt,
  gapsOf,
  median,
  ms,
  percentile,
  round,
  startNode,
  Table,
  tempDir,
  waitFormed,
  workerSpans,
} from './lib.ts'

const run = promisify(execFile)
const FRAMES = 48
const CHUNK = 4
const WORKERS = 2
// the farm gives each task cores / slots threads (one slot per worker): the loop uses the same
const THREADS = Math.max(1, cpus().length)

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

/** CPU ms of a process (Linux: /proc, in clock ticks of 10 ms): its own, and its children's that have ended and been waited for. */
function cpuOf(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { own: (Number(f[11]) + Number(f[12])) * 10, children: (Number(f[13]) + Number(f[14])) * 10 }
}

/**
 * CPU ms of the nodes' launcher (which starts the farm's Blender processes: launch.ts) and of its
 * children that have ended: the farm's Blender processes. This process's own children are the loop's
 * (through bash and xargs) and the launcher itself, which runs on.
 */
function launcherCpu(): { own: number; children: number } {
  const pid = launcherPid()
  return pid === undefined ? { own: 0, children: 0 } : cpuOf(pid)
}

/** What a run took: its wall time, the CPU of the nodes (this process and the launcher) and of the Blender processes. */
interface Run {
  readonly ms: number
  readonly nodeCpuMs: number
  readonly blenderCpuMs: number
}

/** Starts measuring a run (the farm's or the loop's); the function it returns ends it. */
function startRun(): () => Run {
  const cpu0 = process.cpuUsage()
  const kids0 = cpuOf('self').children
  const launcher0 = launcherCpu()
  const t0 = performance.now()
  return () => {
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const launcher = launcherCpu()
    return {
      ms,
      nodeCpuMs: (cpu.user + cpu.system) / 1000 + launcher.own - launcher0.own,
      blenderCpuMs: cpuOf('self').children - kids0 + launcher.children - launcher0.children,
    }
  }
}

const pngCount = async (dir: string) =>
  (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.png')).length

/**
 * The loop: plain `blender -b` processes; or, given the farm's bytecode cache (`pycache`), Blender
 * started as the farm's workers start it, reading its scripts' bytecode from that cache.
 */
async function loop(blend: string, out: string, pycache?: string): Promise<Run> {
  const starts = Array.from({ length: FRAMES / CHUNK }, (_, i) => 1 + i * CHUNK).join(' ')
  const script =
    `printf '%s\\n' ${starts} | xargs -P ${WORKERS} -I{} sh -c ` +
    `'blender -b "$0" -Y -o "$1/frame_####" -F PNG -x 1 -t ${THREADS} -s {} -e $(({}+${CHUNK - 1})) -a >/dev/null 2>&1' ` +
    `"${blend}" "${out}"`
  const env = pycache === undefined ? process.env : { ...process.env, ...pyCacheEnv(pycache) }
  const end = startRun()
  await run('bash', ['-c', script], { maxBuffer: 1 << 24, env })
  const r = end()
  if ((await pngCount(out)) !== FRAMES) throw new Error(`the loop rendered ${await pngCount(out)} frames`)
  return r
}

async function single(blend: string, out: string): Promise<number> {
  const args = [
    '-b',
    blend,
    '-Y',
    '-o',
    join(out, 'frame_####'),
    '-F',
    'PNG',
    '-x',
    '1',
    '-t',
    String(THREADS),
  ]
  const t = await timed(() =>
    run('blender', [...args, '-s', '1', '-e', String(FRAMES), '-a'], { maxBuffer: 1 << 26 }),
  )
  if ((await pngCount(out)) !== FRAMES) throw new Error('the single process did not render every frame')
  return t
}

interface Farm {
  nodes: RunningNode[]
  client: ApiClient
  plan: ReturnType<typeof planSceneFiles>
}

async function startFarm(cleanup: Cleanup, root: string, blend: string): Promise<Farm> {
  const key = FarmKey.generate()
  const nodes: RunningNode[] = []
  for (const i of [0, 1, 2]) {
    nodes.push(
      await startNode(cleanup, join(root, `n${i}`), `n${i}`, key, {
        bootstrap: i === 0 ? [] : [addrOf(nodes[0]!)],
        // the submitting peer (a laptop) renders nothing; the two others one chunk at a time
        disable: i === 0 ? ['blender', 'ffmpeg'] : ['ffmpeg'],
      }),
    )
  }
  await waitFormed(nodes)
  // the workers' self-tests, and the bytecode cache each builds for its Blender, are done
  await Promise.all(nodes.map((n) => n.appsReady))
  const scene = await inspectBlend(blend)
  const plan = planSceneFiles(blend, scene.dependencies)
  const client = await ApiClient.connect(join(root, 'n0'))
  return { nodes, client, plan }
}

/**
 * One job of all the frames on the running farm: from the submit until the last frame is home and
 * the job is DONE, whichever comes later. A worker records a chunk's frames as soon as the last one
 * is saved, before Blender has quit: the loop's time includes its last Blender's exit, and so does
 * the farm's, through the job's end.
 */
async function farmRound(f: Farm, out: string, gaps: number[]) {
  // the frames are counted as they land (inotify), not by listing the folder every few ms: the
  // measurement then costs the process whose CPU it reports next to nothing
  await mkdir(out, { recursive: true })
  const landed = new Set<string>()
  let allHome = (): void => {}
  const home = new Promise<void>((resolve) => {
    allHome = resolve
  })
  const watcher = watch(out, (_event, name) => {
    if (name === null || !/^frame_\d+\.png$/.test(name)) return
    landed.add(name)
    if (landed.size === FRAMES) allHome()
  })
  // should the watcher miss an event, a slow listing still ends the wait
  const fallback = setInterval(() => {
    void pngCount(out).then((n) => n >= FRAMES && allHome())
  }, 1_000)
  const farm = f.nodes[0]!.node.farm
  let jobId: string | undefined
  let jobDone = (): void => {}
  const done = new Promise<void>((resolve) => {
    jobDone = resolve
  })
  const onUpdate = () => {
    if (jobId !== undefined && farm.view(jobId)?.state === 'DONE') jobDone()
  }
  farm.doc.on('update', onUpdate)
  // the document updates the peers publish for the job (each signed, gossiped, verified, applied and
  // scheduled on every peer)
  const published = () =>
    f.nodes.reduce((n, x) => {
      const s = x.node.libp2p.services.docSync.stats
      return n + s.gossipUpdatesSent + s.gossipAnnouncementsSent
    }, 0)
  const updates0 = published()
  const window0 = process.hrtime.bigint()
  // wall-clock, as the workers' log stores time their attempts
  const submitted = Date.now()
  const end = startRun()
  const job = await f.client.post<{ id: string }>('/v1/jobs', {
    app: 'blender',
    frames: `1-${FRAMES}`,
    chunk: CHUNK,
    settings: { scene: f.plan.scene, denoise: 'keep' },
    files: f.plan.files,
    out,
  })
  jobId = job.id
  onUpdate()
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the farm did not finish in 10 minutes')), 600_000)
  })
  try {
    await Promise.race([Promise.all([home, done]), late])
  } finally {
    farm.doc.off('update', onUpdate)
    clearTimeout(timer)
    clearInterval(fallback)
    watcher.close()
  }
  const r = end()
  const homeAt = Date.now()
  const docUpdates = published() - updates0
  // the farm's run on the monotonic clock in µs, as a --cpu-prof profile's timestamps are
  const windowUs = [window0 / 1000n, process.hrtime.bigint() / 1000n].map(Number)
  if ((await pngCount(out)) !== FRAMES) throw new Error(`the farm brought ${await pngCount(out)} frames home`)
  const v = farm.view(job.id)!
  const perWorker = await workerSpans(f.nodes.slice(1), v)
  gaps.push(...gapsOf(perWorker))
  const spans = perWorker.flat()
  // what the farm adds before the first task and after the last one, on the path of the whole job
  const firstStartMs = Math.min(...spans.map((s) => s.start)) - submitted
  const homeAfterEndMs = homeAt - Math.max(...spans.map((s) => s.end))
  const owners = new Map<string, number>()
  for (const task of v.tasks) owners.set(task.owner ?? '-', (owners.get(task.owner ?? '-') ?? 0) + 1)
  // every round renders the same frames, byte for byte: left in the stores, the next round's workers
  // would find each frame already held and the submitter would fetch none. A real render's frames are
  // new to every store, so they go (the scene stays, as it does for a user who renders it again).
  for (const o of farm.outputs(job.id)) for (const n of f.nodes) await n.node.blobStore.drop(o.hash)
  return { ...r, perWorker: [...owners.values()], windowUs, firstStartMs, homeAfterEndMs, docUpdates }
}

async function main(): Promise<void> {
  const at = process.argv.indexOf('--rounds')
  const rounds = at > 0 ? Number(process.argv[at + 1]) : 7
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a whole number >= 1')
  const cleanup = new Cleanup()
  try {
    const root = await tempDir(cleanup, 'render')
    const scene = await makeTestScene(root)
    const gaps: number[] = []
    const f = await startFarm(cleanup, root, scene.blend)
    if (process.argv.includes('--farm-only')) {
      // for profiling the farm alone, `--rounds` jobs one after the other (the first one is cold):
      // `node --cpu-prof --import tsx bench/render.ts --farm-only --rounds 2`
      for (let i = 0; i < rounds; i++) {
        const r = await farmRound(f, join(root, `out-farm-${i}`), gaps)
        console.log(
          JSON.stringify({
            farm_s: round(r.ms / 1000, 2),
            node_cpu_s: round(r.nodeCpuMs / 1000, 2),
            blender_cpu_s: round(r.blenderCpuMs / 1000, 2),
            doc_updates: r.docUpdates,
            window_us: r.windowUs,
          }),
        )
      }
      return
    }
    // the machine's speed drifts between runs (other tenants, clocks): the loops and the farm take
    // turns, and each figure is the median of its rounds
    const pycache = f.nodes[1]!.pycache('blender')
    if (pycache === undefined) throw new Error('the worker built no bytecode cache for Blender (see its log)')
    const farmRuns: Awaited<ReturnType<typeof farmRound>>[] = []
    const loopRuns: Run[] = []
    const cachedRuns: Run[] = []
    for (let i = 0; i < rounds; i++) {
      const turns = [
        async () => loopRuns.push(await loop(scene.blend, join(root, `out-loop-${i}`))),
        async () => cachedRuns.push(await loop(scene.blend, join(root, `out-cached-${i}`), pycache)),
        async () => farmRuns.push(await farmRound(f, join(root, `out-farm-${i}`), gaps)),
      ]
      // round 1: loop, cached loop, farm; round 2: cached loop, farm, loop; round 3: farm, loop, ...
      for (let k = 0; k < turns.length; k++) await turns[(i + k) % turns.length]!()
    }
    const loopMs = loopRuns.map((r) => r.ms)
    const cachedMs = cachedRuns.map((r) => r.ms)
    const paired = farmRuns.map((r, i) => r.ms / loopMs[i]!)
    const pairedCached = farmRuns.map((r, i) => r.ms / cachedMs[i]!)
    const cpuS = (runs: readonly Run[], k: 'nodeCpuMs' | 'blenderCpuMs') =>
      round(median(runs.map((r) => r[k])) / 1000, 2)
    const singleMs = await single(scene.blend, join(root, 'out-single'))
    const farmMs = median(farmRuns.map((r) => r.ms))
    const figures = {
      overhead_vs_loop: round(farmMs / median(loopMs), 3),
      overhead_vs_single: round(farmMs / singleMs, 3),
      // each round's farm / loop (run back to back), their median and range
      overhead_vs_loop_paired: round(median(paired), 3),
      overhead_vs_loop_paired_min: round(Math.min(...paired), 3),
      overhead_vs_loop_paired_max: round(Math.max(...paired), 3),
      // against a loop whose Blender reads the same bytecode cache as the farm's: what the farm's own
      // work adds, the start-up it saves Blender taken out
      overhead_vs_loop_pycache: round(farmMs / median(cachedMs), 3),
      overhead_vs_loop_pycache_paired: round(median(pairedCached), 3),
      task_gap_ms_p50: round(percentile(gaps, 0.5), 1),
      task_gap_ms_p95: round(percentile(gaps, 0.95), 1),
      farm_s: round(farmMs / 1000, 2),
      loop_s: round(median(loopMs) / 1000, 2),
      loop_pycache_s: round(median(cachedMs) / 1000, 2),
      single_s: round(singleMs / 1000, 2),
      rounds,
      gaps: gaps.length,
      node_cpu_s: cpuS(farmRuns, 'nodeCpuMs'),
      // the same nodes, idle, while the loop runs
      loop_node_cpu_s: cpuS(loopRuns, 'nodeCpuMs'),
      // all the Blender processes of a run (the farm's children; the loop's, through bash and xargs)
      blender_cpu_farm_s: cpuS(farmRuns, 'blenderCpuMs'),
      blender_cpu_loop_s: cpuS(loopRuns, 'blenderCpuMs'),
      blender_cpu_loop_pycache_s: cpuS(cachedRuns, 'blenderCpuMs'),
      // of all the cores' time during the run: what the nodes took from Blender, on a machine Blender fills
      node_cpu_share: round(median(farmRuns.map((r) => r.nodeCpuMs / (r.ms * cpus().length))), 3),
      // the submit -> the first task's start on its worker; the last task's end -> its last frame home
      first_start_ms: round(median(farmRuns.map((r) => r.firstStartMs)), 1),
      home_after_end_ms: round(median(farmRuns.map((r) => r.homeAfterEndMs)), 1),
      doc_updates_per_job: median(farmRuns.map((r) => r.docUpdates)),
    }
    const table = new Table()
    table.section(
      `${FRAMES} frames of the test scene (96x54 Cycles, 8 samples), chunks of ${CHUNK}, -t ${THREADS}; ` +
        `medians of ${rounds} rounds`,
    )
    table.row(
      'farm: 3 peers, 2 render',
      `${fmt(figures.farm_s)} s`,
      `tasks per worker: ${farmRuns[0]!.perWorker.join(', ')}`,
    )
    table.row('loop: blender -b, 2 at a time', `${fmt(figures.loop_s)} s`, 'xargs -P 2, same chunks')
    table.row(
      "  the same, with the farm's bytecode cache",
      `${fmt(figures.loop_pycache_s)} s`,
      'PYTHONPYCACHEPREFIX, as the workers start Blender',
    )
    table.row('single: one blender -b -a', `${fmt(figures.single_s)} s`, 'no per-task start-up')
    table.row(
      'CPU of the 3 nodes per farm run',
      `${fmt(figures.node_cpu_s)} s`,
      'one process here, and their launcher',
    )
    table.row(
      '  share of the cores',
      fmt(figures.node_cpu_share),
      `of ${cpus().length} cores x the farm's run`,
    )
    table.row('  the same nodes during a loop', `${fmt(figures.loop_node_cpu_s)} s`, 'idle')
    table.row(
      'CPU of Blender per run: farm / loop',
      `${fmt(figures.blender_cpu_farm_s)} s / ${fmt(figures.blender_cpu_loop_s)} s`,
      `all its processes; the loop with the cache: ${fmt(figures.blender_cpu_loop_pycache_s)} s`,
    )
    table.row('overhead vs loop', fmt(figures.overhead_vs_loop), 'target <= 1.05; median farm / median loop')
    table.row(
      '  paired, round by round',
      fmt(figures.overhead_vs_loop_paired),
      `median of each round's farm / loop; ${fmt(figures.overhead_vs_loop_paired_min)} to ${fmt(figures.overhead_vs_loop_paired_max)}`,
    )
    table.row(
      'overhead vs the loop with the cache',
      fmt(figures.overhead_vs_loop_pycache),
      `what the farm's own work adds; paired ${fmt(figures.overhead_vs_loop_pycache_paired)}`,
    )
    table.row('overhead vs single', fmt(figures.overhead_vs_single), 'what per-task start-up costs')
    table.section('each round: farm / loop / loop with the cache, in turns, on the same farm')
    for (let i = 0; i < rounds; i++) {
      const r = farmRuns[i]!
      table.row(
        `round ${i + 1}`,
        `${fmt(round(r.ms / 1000, 2))} / ${fmt(round(loopMs[i]! / 1000, 2))} / ${fmt(round(cachedMs[i]! / 1000, 2))} s`,
        `farm / loop = ${fmt(round(paired[i]!, 3))}, / cached loop = ${fmt(round(pairedCached[i]!, 3))}; ` +
          `CPU of the nodes ${fmt(round(r.nodeCpuMs / 1000, 2))} s, of Blender ${fmt(round(r.blenderCpuMs / 1000, 2))} s`,
      )
    }
    table.section('gap between two tasks on one worker (attempt end -> next start, log store times)')
    table.row(
      'p50',
      ms(figures.task_gap_ms_p50),
      `${gaps.length} gaps; target < 100 ms; below 0: the next task started while the last one stored its frames`,
    )
    table.row('p95', ms(figures.task_gap_ms_p95))
    table.section("the rest of the farm's own latency, on the path of the whole job (medians)")
    table.row('submit -> first task starts', ms(figures.first_start_ms), "the claim's settle window is 50 ms")
    table.row('last task ends -> frames home, job DONE', ms(figures.home_after_end_ms), 'the loop: 0')
    table.row(
      'document updates per job',
      figures.doc_updates_per_job,
      'published by all the peers: the submit, claims, starts, ends, output records',
    )
    table.print()
    console.log(JSON.stringify(figures))
  } finally {
    await cleanup.runAll()
  }
}

await main()
