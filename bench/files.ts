// Blob benchmark: a 200 MB file peer to peer over the farm's real stack on loopback (tcp + the farm's
// private network + noise + yamux, identify, kad-dht, the blob service), each node in its own process
// so RSS and CPU are per node. Measures one transfer against a plain `cp` of the same file, the same
// without the private network and with libp2p's pnet in its place (what the farm used before: its
// XSalsa20 is WebAssembly), the fan-out to 5 peers that all start at once (peers that
// finish serve the others), and the fetching process's peak RSS.
// Usage: npx tsx bench/files.ts [--quick] [--max-uploads N] [--fanout N]   (npm run bench:files)
// Prints a table, then as its last stdout line one JSON object. Progress goes to stderr.

import { execFile, fork } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { open, rm } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FarmKey } from '../src/node/farmkey.ts'
import { type Reply, runChild } from './files-node.ts'
import { Cleanup, fmt, REPO, round, Table, tempDir } from './lib.ts'

const quick = process.argv.includes('--quick')
const MB = 1024 * 1024
const SIZE_MB = quick ? 50 : 200
const RUNS = quick ? 1 : 3
/** --fanout N: peers in the fan-out (default 5, the figure). */
const fanoutArg = process.argv.indexOf('--fanout')
const FANOUT = fanoutArg > 0 ? Number(process.argv[fanoutArg + 1]) : 5
if (!Number.isInteger(FANOUT) || FANOUT < 1)
  throw new Error('--fanout needs a whole number of peers, 1 or more')
/** --max-uploads N: the nodes' limit of large uploads at once (default: the service's, 2). */
const maxUploadsArg = process.argv.indexOf('--max-uploads')
const MAX_UPLOADS = maxUploadsArg > 0 ? (process.argv[maxUploadsArg + 1] ?? '') : ''
const progress = (line: string) => console.error(line)
const PROF = process.env.PROF ?? ''

interface Node {
  readonly name: string
  ask(msg: Record<string, unknown>): Promise<Reply>
  readonly addr: string
}

type Protector = 'farmnet' | 'pnet'

async function startNode(
  cleanup: Cleanup,
  dir: string,
  name: string,
  key: FarmKey | null,
  protector: Protector = 'farmnet',
): Promise<Node> {
  const child = fork(
    join(REPO, 'bench', 'files.ts'),
    ['child', join(dir, name), key?.hex ?? '', MAX_UPLOADS, protector],
    {
      cwd: REPO,
      // PROF=DIR writes each node's CPU profile there
      execArgv: ['--import', 'tsx', ...(PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`] : [])],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  )
  let seq = 0
  const waiting = new Map<number, (r: Reply) => void>()
  child.on('message', (m: Reply) => waiting.get(m.id)?.(m))
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`node ${name} exited with ${code}`))),
  )
  exited.catch(() => undefined)
  const ask = async (msg: Record<string, unknown>): Promise<Reply> => {
    const id = ++seq
    const reply = new Promise<Reply>((resolve) => waiting.set(id, resolve))
    child.send({ ...msg, id })
    const r = await Promise.race([reply, exited])
    waiting.delete(id)
    if (r.error !== undefined) throw new Error(`${name}: ${r.error}`)
    return r
  }
  cleanup.add(`stop ${name}`, async () => {
    if (child.exitCode !== null) return
    await ask({ cmd: 'stop' }).catch(() => child.kill('SIGKILL'))
  })
  const { addr } = await ask({ cmd: 'start' })
  return { name, ask, addr: addr as string }
}

async function makeFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w')
  const buf = Buffer.allocUnsafe(MB)
  for (let done = 0; done < bytes; done += MB) {
    randomFillSync(buf)
    await fh.write(buf, 0, Math.min(MB, bytes - done))
  }
  await fh.close()
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** `cp` of a file already in the page cache, after a sync; also until a sync after it returns. */
async function timeCp(src: string, dst: string): Promise<{ cp: number; cpSync: number }> {
  const run = promisify(execFile)
  const cp: number[] = []
  const cpSync: number[] = []
  for (let i = 0; i < RUNS; i++) {
    await run('sync')
    const t = performance.now()
    await run('cp', [src, dst])
    cp.push((performance.now() - t) / 1000)
    await run('sync')
    cpSync.push((performance.now() - t) / 1000)
    await rm(dst)
  }
  return { cp: median(cp), cpSync: median(cpSync) }
}

/** One holder, one fetcher, RUNS transfers (the fetcher drops the blob between runs). */
async function pair(
  cleanup: Cleanup,
  dir: string,
  file: string,
  key: FarmKey | null,
  tag: string,
  protector: Protector = 'farmnet',
) {
  const seed = await startNode(cleanup, dir, `${tag}-seed`, key, protector)
  const fetcher = await startNode(cleanup, dir, `${tag}-fetcher`, key, protector)
  const t = performance.now()
  const { hash } = await seed.ask({ cmd: 'add', path: file })
  const addS = (performance.now() - t) / 1000
  await fetcher.ask({ cmd: 'dial', addr: seed.addr })
  const runs: Reply[] = []
  const cpu: number[] = []
  const cpuS = async () =>
    ((await seed.ask({ cmd: 'stats' })).cpuS as number) +
    ((await fetcher.ask({ cmd: 'stats' })).cpuS as number)
  for (let i = 0; i < RUNS; i++) {
    const before = await cpuS()
    runs.push(await fetcher.ask({ cmd: 'fetch', hash }))
    cpu.push((await cpuS()) - before)
    await fetcher.ask({ cmd: 'drop', hash })
    progress(`  ${tag} run ${i + 1}: ${round(runs.at(-1)!.seconds as number, 2)} s`)
  }
  return { hash, addS, seconds: median(runs.map((r) => r.seconds as number)), runs, cpuS: median(cpu) }
}

async function fanout(cleanup: Cleanup, dir: string, file: string, key: FarmKey) {
  const seed = await startNode(cleanup, dir, 'fan-seed', key)
  const peers = await Promise.all(
    Array.from({ length: FANOUT }, (_, i) => startNode(cleanup, dir, `fan-${i}`, key)),
  )
  const { hash } = await seed.ask({ cmd: 'add', path: file })
  const all = [seed, ...peers]
  for (const [i, x] of all.entries()) {
    for (const y of all.slice(i + 1)) await x.ask({ cmd: 'dial', addr: y.addr })
  }
  const stats = async () => Promise.all(all.map((n) => n.ask({ cmd: 'stats' })))
  const before = await stats()
  const t = performance.now()
  const done = await Promise.all(peers.map((p) => p.ask({ cmd: 'fetch', hash })))
  const seconds = (performance.now() - t) / 1000
  const after = await stats()
  const served = after.map((s) => s.bytesServed as number)
  const relays = after.reduce((n, s, i) => n + (s.relays as number) - (before[i]!.relays as number), 0)
  const cpu = after.map((s, i) => (s.cpuS as number) - (before[i]!.cpuS as number))
  const cpuS = cpu.reduce((a, b) => a + b, 0)
  return { seconds, finish: done.map((r) => r.seconds as number), served, relays, cpu, cpuS }
}

async function main(): Promise<void> {
  const cleanup = new Cleanup()
  const t = new Table()
  const out: Record<string, number> = {}
  try {
    const dir = await tempDir(cleanup, 'files')
    const file = join(dir, 'input.bin')
    progress(`writing a ${SIZE_MB} MB random file`)
    await makeFile(file, SIZE_MB * MB)
    const { cp: cpS, cpSync } = await timeCp(file, join(dir, 'copy.bin'))
    const key = FarmKey.generate()
    progress('one transfer, farm stack')
    // nodes get their own cleanup: the pairs stop before the fan-out starts, the temp dir stays
    const pairs = new Cleanup()
    cleanup.add('stop the nodes', () => pairs.runAll())
    const p = await pair(pairs, dir, file, key, 'farm')
    progress('one transfer, no private network')
    const q = await pair(pairs, dir, file, null, 'plain')
    progress("one transfer, libp2p's pnet as the private network")
    const r = await pair(pairs, dir, file, key, 'pnet', 'pnet')
    await pairs.runAll()
    progress(`fan-out to ${FANOUT} peers`)
    const f = await fanout(pairs, dir, file, key)

    const rss = median(p.runs.map((r) => (r.rssPeakMb as number) - (r.rssBeforeMb as number)))
    out.blob_mb_s = round(SIZE_MB / p.seconds, 1)
    out.blob_vs_cp = round(cpS / p.seconds, 2)
    out.fanout_s_5 = round(f.seconds, 2)
    out.rss_mb_transfer = round(rss, 1)
    out.cp_mb_s = round(SIZE_MB / cpS, 1)
    out.blob_mb_s_unprotected = round(SIZE_MB / q.seconds, 1)
    out.blob_vs_cp_unprotected = round(cpS / q.seconds, 2)
    out.blob_mb_s_pnet = round(SIZE_MB / r.seconds, 1)
    out.cp_sync_mb_s = round(SIZE_MB / cpSync, 1)
    out.blob_vs_cp_sync = round(cpSync / p.seconds, 2)
    out.fanout_vs_5x_one = round(f.seconds / (FANOUT * p.seconds), 2)
    out.fanout_seed_share = round(f.served[0]! / (FANOUT * SIZE_MB * MB), 2)
    out.add_mb_s = round(SIZE_MB / p.addS, 1)
    out.cpu_s_transfer = round(p.cpuS, 2)
    out.cpu_s_transfer_pnet = round(r.cpuS, 2)
    out.cpu_s_fanout_5 = round(f.cpuS, 2)
    out.load_avg_1m = round(loadavg()[0]!, 2)

    t.section(`setup: ${SIZE_MB} MB random file, nodes in separate processes on 127.0.0.1, median of ${RUNS}`)
    t.row('plain cp', `${fmt(round(cpS, 2))} s`, `${out.cp_mb_s} MB/s (JSON: cp_mb_s)`)
    t.row(
      'cp, then sync',
      `${fmt(round(cpSync, 2))} s`,
      `${out.cp_sync_mb_s} MB/s: on disk, as a fetch is when it returns`,
    )
    t.row('add to the store (hash + copy + fsync)', `${fmt(round(p.addS, 2))} s`, `${out.add_mb_s} MB/s`)
    t.section('one transfer, fetch() until the blob is verified and installed')
    t.row(
      'farm stack (farm network + noise + yamux)',
      `${fmt(round(p.seconds, 2))} s`,
      `${out.blob_mb_s} MB/s (JSON: blob_mb_s)`,
    )
    t.row('  vs cp', out.blob_vs_cp, 'JSON: blob_vs_cp (target >= 0.5)')
    t.row('  vs cp + sync', out.blob_vs_cp_sync, 'JSON: blob_vs_cp_sync')
    t.row('  CPU of both nodes', `${fmt(out.cpu_s_transfer)} s`, 'JSON: cpu_s_transfer')
    t.row(
      'no private network (noise + yamux)',
      `${fmt(round(q.seconds, 2))} s`,
      `${out.blob_mb_s_unprotected} MB/s (JSON: blob_mb_s_unprotected)`,
    )
    t.row('  vs cp', out.blob_vs_cp_unprotected, 'JSON: blob_vs_cp_unprotected')
    t.row(
      "libp2p's pnet instead (XSalsa20, wasm)",
      `${fmt(round(r.seconds, 2))} s`,
      `${out.blob_mb_s_pnet} MB/s (JSON: blob_mb_s_pnet)`,
    )
    t.row('  CPU of both nodes', `${fmt(out.cpu_s_transfer_pnet)} s`, 'JSON: cpu_s_transfer_pnet')
    t.row(
      'fetcher RSS growth, peak',
      `${out.rss_mb_transfer} MB`,
      'JSON: rss_mb_transfer (peak minus before)',
    )
    t.section(`fan-out: ${FANOUT} peers fetch at once, full mesh, farm stack`)
    t.row('until all hold it', `${fmt(out.fanout_s_5)} s`, 'JSON: fanout_s_5')
    t.row('  vs 5 x one transfer', out.fanout_vs_5x_one, 'JSON: fanout_vs_5x_one')
    t.row('CPU of all 6 processes', `${fmt(round(f.cpuS, 2))} s`, 'JSON: cpu_s_fanout_5')
    t.row('CPU per process, seed first', f.cpu.map((x) => `${round(x, 1)}`).join(' / '), 's')
    t.row('each peer done after', f.finish.map((s) => `${round(s, 1)}`).join(' / '), 's')
    t.row(
      'served by seed / peers',
      f.served.map((b) => `${round(b / MB, 0)}`).join(' / '),
      `MB; seed share ${out.fanout_seed_share} (JSON: fanout_seed_share)`,
    )
    t.row('downloads relayed while still arriving', f.relays)
    t.print()
  } finally {
    await cleanup.runAll()
  }
  console.log(JSON.stringify(out))
}

if (process.argv[2] === 'child') await runChild()
else await main()
