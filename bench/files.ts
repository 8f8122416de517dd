// Blob benchmark: a 200 MB file peer to peer over the farm's real stack on loopback (tcp + the farm's
// private network + noise + yamux, identify, kad-dht, the blob service), each node in its own process
// so RSS and CPU are per node. Measures one transfer against a plain `cp` of the same file, the same
// without the private network and with libp2p's pnet in its place (what the farm used before: its
// XSalsa20 is WebAssembly), the fan-out to 5 peers that all start at once (peers that
// finish serve the others; every node warmed up by one transfer first), and the fetching process's
// peak RSS. And the ceiling this CPU puts on any transfer over the farm stack: the per-byte crypto and
// hashing alone, timed here (cryptoCeiling), against the same `cp`.
// On loopback every process shares this machine's cores, so the fan-out measures CPU, not a network.
// Where ../shared/tools/lan can run (root, network namespaces) the bench also runs one transfer and
// the fan-out on a virtual LAN: each node a host of its own, each host's link shaped to --lan-rate
// (default 1gbit) each way, as on a switch. That is the case a swarm is for.
// Usage: npx tsx bench/files.ts [--quick] [--max-uploads N] [--fanout N] [--lan-rate R | --no-lan]
//        (npm run bench:files)
// Prints a table, then as its last stdout line one JSON object. Progress goes to stderr.

import { execFile, fork } from 'node:child_process'
import { createCipheriv, createHash, randomFillSync } from 'node:crypto'
import { existsSync } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FarmKey } from '../src/node/farmkey.ts'
import { type Reply, runChild } from './files-node.ts'
import { Cleanup, fmt, median, REPO, round, Table, tempDir } from './lib.ts'

const quick = process.argv.includes('--quick')
const MB = 1024 * 1024
const SIZE_MB = quick ? 50 : 200
const RUNS = quick ? 1 : 3
/** The warm-up blob each fan-out node serves once and fetches once before the fan-out. */
const WARM_MB = quick ? 16 : 64
/** --fanout N: peers in the fan-out (default 5, the figure). */
const fanoutArg = process.argv.indexOf('--fanout')
const FANOUT = fanoutArg > 0 ? Number(process.argv[fanoutArg + 1]) : 5
if (!Number.isInteger(FANOUT) || FANOUT < 1)
  throw new Error('--fanout needs a whole number of peers, 1 or more')
/** --max-uploads N: the nodes' limit of large uploads at once (default: the service's, 2). */
const maxUploadsArg = process.argv.indexOf('--max-uploads')
const MAX_UPLOADS = maxUploadsArg > 0 ? (process.argv[maxUploadsArg + 1] ?? '') : ''
/** --lan-rate R: each LAN host's link, each way, as tc writes it (1gbit, 250mbit). */
const lanRateArg = process.argv.indexOf('--lan-rate')
const LAN_RATE = lanRateArg > 0 ? (process.argv[lanRateArg + 1] ?? '') : '1gbit'
if (!/^\d+(\.\d+)?[kmg]?bit$/.test(LAN_RATE))
  throw new Error('--lan-rate takes a rate such as 1gbit or 250mbit')
const LAN_TOOL = join(REPO, '..', 'shared', 'tools', 'lan')
const progress = (line: string) => console.error(line)
const PROF = process.env.PROF ?? ''

interface Node {
  readonly name: string
  ask(msg: Record<string, unknown>): Promise<Reply>
  readonly addr: string
}

type Protector = 'farmnet' | 'pnet'

/** A host of a virtual LAN: its node runs inside it and listens on its address. */
interface LanHost {
  readonly lan: string
  readonly index: number
  readonly ip: string
}

async function startNode(
  cleanup: Cleanup,
  dir: string,
  name: string,
  key: FarmKey | null,
  protector: Protector = 'farmnet',
  host?: LanHost,
): Promise<Node> {
  const listen = `/ip4/${host?.ip ?? '127.0.0.1'}/tcp/0`
  // PROF=DIR writes each node's CPU profile there
  const nodeArgs = ['--import', 'tsx', ...(PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`] : [])]
  const child = fork(
    join(REPO, 'bench', 'files.ts'),
    ['child', join(dir, name), key?.hex ?? '', MAX_UPLOADS, protector, listen],
    {
      cwd: REPO,
      // on a LAN host: `lan exec NAME I node ...`, which keeps the IPC channel's descriptor
      ...(host
        ? {
            execPath: LAN_TOOL,
            execArgv: ['exec', host.lan, String(host.index), process.execPath, ...nodeArgs],
          }
        : { execArgv: nodeArgs }),
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

/**
 * What no transfer over the farm stack can skip, timed on this CPU with the primitives the stack uses,
 * in Noise-message-sized pieces (64 KiB): the farm network's ChaCha20 and Noise's ChaCha20-Poly1305
 * on both sides (each side does the same work, encrypting or decrypting), and the receiver's SHA-256.
 * One stream's receiver is one thread, so it cannot go faster than that thread's work per byte; and
 * both processes share the cores, so neither faster than all the work spread over every core. The
 * lower of the two, with nothing else counted (no copies, writes, fsync, framing), is the ceiling.
 */
function cryptoCeiling(cores: number): { mbS: number; farmMbS: number; noiseMbS: number; shaMbS: number } {
  const piece = randomFillSync(Buffer.alloc(65_519)) // Noise's largest payload
  const bytes = (quick ? 16 : 64) * MB
  // a ceiling wants each pass at its fastest: the best of 6 rounds (this machine's speed drifts, and
  // its first tenth of a second of a busy loop is often slow)
  const rate = (f: () => void): number => {
    let best = 0
    for (let round = 0; round < 6; round++) {
      const t = performance.now()
      for (let n = 0; n < bytes; n += piece.byteLength) f()
      best = Math.max(best, bytes / MB / ((performance.now() - t) / 1000))
    }
    return best
  }
  const key = randomFillSync(Buffer.alloc(32))
  const farm = createCipheriv('chacha20', key, Buffer.alloc(16))
  let counter = 0
  const nonce = Buffer.alloc(12)
  const farmMbS = rate(() => farm.update(piece))
  const noiseMbS = rate(() => {
    nonce.writeUInt32LE(counter++, 4)
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
    c.update(piece)
    c.final()
    c.getAuthTag()
  })
  const hash = createHash('sha256')
  const shaMbS = rate(() => hash.update(piece))
  const side = 1 / farmMbS + 1 / noiseMbS // seconds per MB on each side
  const receiver = side + 1 / shaMbS
  const all = (2 * side + 1 / shaMbS) / Math.max(1, cores)
  return { mbS: 1 / Math.max(receiver, all), farmMbS, noiseMbS, shaMbS }
}

/** One holder, one fetcher, RUNS transfers (the fetcher drops the blob between runs). */
async function pair(
  cleanup: Cleanup,
  dir: string,
  file: string,
  key: FarmKey | null,
  tag: string,
  protector: Protector = 'farmnet',
  hosts: readonly LanHost[] = [],
) {
  const seed = await startNode(cleanup, dir, `${tag}-seed`, key, protector, hosts[0])
  const fetcher = await startNode(cleanup, dir, `${tag}-fetcher`, key, protector, hosts[1])
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
  const seconds = median(runs.map((r) => r.seconds as number))
  return { hash, addS, seconds, runs, cpuS: median(cpu), firstCpuS: cpu[0]! }
}

async function fanout(
  cleanup: Cleanup,
  dir: string,
  file: string,
  key: FarmKey,
  hosts: readonly LanHost[] = [],
) {
  const tag = hosts.length > 0 ? 'lan-fan' : 'fan'
  const seed = await startNode(cleanup, dir, `${tag}-seed`, key, 'farmnet', hosts[0])
  const peers = await Promise.all(
    Array.from({ length: FANOUT }, (_, i) =>
      startNode(cleanup, dir, `${tag}-${i}`, key, 'farmnet', hosts[i + 1]),
    ),
  )
  const { hash } = await seed.ask({ cmd: 'add', path: file })
  const all = [seed, ...peers]
  for (const [i, x] of all.entries()) {
    for (const y of all.slice(i + 1)) await x.ask({ cmd: 'dial', addr: y.addr })
  }
  // A node of a running farm has moved blobs before; a fresh process pays for its first transfer
  // about twice (JIT, the heap growing, fresh pages: 3.1-3.3 CPU-s against 1.0-1.7 for the runs after
  // it). The one transfer above is a median of warm runs, so each node here first serves one warm-up
  // blob to the next node in a ring, and fetches one.
  for (const [i, x] of all.entries()) {
    const warm = join(dir, `warm-${tag}-${i}.bin`)
    await makeFile(warm, WARM_MB * MB)
    const { hash: w } = await x.ask({ cmd: 'add', path: warm })
    await all[(i + 1) % all.length]!.ask({ cmd: 'fetch', hash: w })
    await rm(warm)
  }
  const stats = async () => Promise.all(all.map((n) => n.ask({ cmd: 'stats' })))
  const before = await stats()
  const t = performance.now()
  const done = await Promise.all(peers.map((p) => p.ask({ cmd: 'fetch', hash })))
  const seconds = (performance.now() - t) / 1000
  const after = await stats()
  const served = after.map((s, i) => (s.bytesServed as number) - (before[i]!.bytesServed as number))
  const relays = after.reduce((n, s, i) => n + (s.relays as number) - (before[i]!.relays as number), 0)
  const cpu = after.map((s, i) => (s.cpuS as number) - (before[i]!.cpuS as number))
  const cpuS = cpu.reduce((a, b) => a + b, 0)
  return { seconds, finish: done.map((r) => r.seconds as number), served, relays, cpu, cpuS }
}

/**
 * A virtual LAN of `n` hosts whose links are shaped to LAN_RATE each way (the host's side of its
 * cable shapes what it sends, the bridge's side what it receives), or why there is none.
 */
async function lanUp(
  cleanup: Cleanup,
  n: number,
): Promise<{ hosts: LanHost[]; down: () => Promise<void> } | string> {
  const run = promisify(execFile)
  const lan = (...args: string[]) => run(LAN_TOOL, args)
  if (process.argv.includes('--no-lan')) return 'not asked for (--no-lan)'
  if (!existsSync(LAN_TOOL)) return `${LAN_TOOL} not found`
  try {
    await lan('check')
  } catch (err) {
    return `lan check failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`
  }
  const name = `fb${process.pid % 10000}`
  await lan('up', String(n), '-n', name, '-s', '7')
  const down = cleanup.add(`lan down ${name}`, () => lan('down', name))
  const tbf = ['root', 'tbf', 'rate', LAN_RATE, 'burst', '1mb', 'latency', '20ms']
  const hosts: LanHost[] = []
  for (let i = 1; i <= n; i++) {
    await lan('exec', name, String(i), 'tc', 'qdisc', 'replace', 'dev', 'eth0', ...tbf)
    // the bridge's end of host i's cable, named by the lan tool
    await run('tc', ['qdisc', 'replace', 'dev', `${name}v${i}`, ...tbf])
    hosts.push({ lan: name, index: i, ip: (await lan('ip', name, String(i))).stdout.trim() })
  }
  return { hosts, down }
}

/** A fan-out's rows of when each peer finished, who served what, and the relays. */
function fanoutRows(t: Table, f: Awaited<ReturnType<typeof fanout>>, seedShare: string): void {
  t.row('each peer done after', f.finish.map((s) => `${round(s, 1)}`).join(' / '), 's')
  t.row(
    'served by seed / peers',
    f.served.map((b) => `${round(b / MB, 0)}`).join(' / '),
    `MB; seed share ${seedShare}`,
  )
  t.row('downloads relayed while still arriving', f.relays)
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
    const ceiling = cryptoCeiling(availableParallelism())
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
    await pairs.runAll()
    progress(`a virtual LAN of ${FANOUT + 1} hosts, ${LAN_RATE} links`)
    // the LAN goes down after the nodes in it stop (on an error, `lan down` kills what is left)
    const lan = await lanUp(cleanup, FANOUT + 1)
    let lanOne: Awaited<ReturnType<typeof pair>> | null = null
    let lanFan: Awaited<ReturnType<typeof fanout>> | null = null
    if (typeof lan === 'string') progress(`SKIPPED the LAN runs: ${lan}`)
    else {
      progress('one transfer across the LAN')
      lanOne = await pair(pairs, dir, file, key, 'lan', 'farmnet', lan.hosts)
      await pairs.runAll()
      progress(`fan-out to ${FANOUT} peers across the LAN`)
      lanFan = await fanout(pairs, dir, file, key, lan.hosts)
      await pairs.runAll()
      await lan.down()
    }

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
    out.ceiling_mb_s = round(ceiling.mbS, 1)
    out.ceiling_vs_cp = round(ceiling.mbS / out.cp_mb_s, 2)
    out.cpu_s_transfer = round(p.cpuS, 2)
    out.cpu_s_transfer_first = round(p.firstCpuS, 2)
    out.cpu_s_transfer_pnet = round(r.cpuS, 2)
    out.cpu_s_fanout_5 = round(f.cpuS, 2)
    const onLan =
      lanOne && lanFan
        ? {
            lan_blob_mb_s: round(SIZE_MB / lanOne.seconds, 1),
            lan_cpu_s_transfer: round(lanOne.cpuS, 2),
            lan_fanout_s_5: round(lanFan.seconds, 2),
            lan_fanout_vs_5x_one: round(lanFan.seconds / (FANOUT * lanOne.seconds), 2),
            lan_fanout_seed_share: round(lanFan.served[0]! / (FANOUT * SIZE_MB * MB), 2),
            lan_cpu_s_fanout_5: round(lanFan.cpuS, 2),
          }
        : null
    Object.assign(out, onLan)
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
    t.row(
      '  ceiling: the crypto and hashing alone',
      `${out.ceiling_mb_s} MB/s`,
      `vs cp ${out.ceiling_vs_cp} (JSON: ceiling_mb_s, ceiling_vs_cp); on ${availableParallelism()} cores`,
    )
    t.row(
      '    per pass, MB/s on one core',
      `${Math.round(ceiling.farmMbS)} / ${Math.round(ceiling.noiseMbS)} / ${Math.round(ceiling.shaMbS)}`,
      'farm network ChaCha20 / Noise ChaCha20-Poly1305 / SHA-256',
    )
    t.row('  CPU of both nodes', `${fmt(out.cpu_s_transfer)} s`, 'JSON: cpu_s_transfer')
    t.row(
      '  the same, first run of fresh processes',
      `${fmt(out.cpu_s_transfer_first)} s`,
      'JSON: cpu_s_transfer_first',
    )
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
    t.section(
      `fan-out: ${FANOUT} peers fetch at once, full mesh, farm stack, each node warmed by one ${WARM_MB} MB transfer`,
    )
    t.row('until all hold it', `${fmt(out.fanout_s_5)} s`, 'JSON: fanout_s_5')
    t.row('  vs 5 x one transfer', out.fanout_vs_5x_one, 'JSON: fanout_vs_5x_one')
    t.row('CPU of all 6 processes', `${fmt(round(f.cpuS, 2))} s`, 'JSON: cpu_s_fanout_5')
    t.row('CPU per process, seed first', f.cpu.map((x) => `${round(x, 1)}`).join(' / '), 's')
    fanoutRows(t, f, `${out.fanout_seed_share} (JSON: fanout_seed_share)`)
    if (lanOne && lanFan && onLan) {
      t.section(
        `on a virtual LAN: ${FANOUT + 1} hosts (network namespaces), each link ${LAN_RATE} each way; ` +
          'the hosts still share these 2 cores',
      )
      t.row(
        'one transfer',
        `${fmt(round(lanOne.seconds, 2))} s`,
        `${onLan.lan_blob_mb_s} MB/s (JSON: lan_blob_mb_s)`,
      )
      t.row('  CPU of both nodes', `${fmt(onLan.lan_cpu_s_transfer)} s`, 'JSON: lan_cpu_s_transfer')
      t.row(
        `fan-out to ${FANOUT}, until all hold it`,
        `${fmt(onLan.lan_fanout_s_5)} s`,
        'JSON: lan_fanout_s_5',
      )
      t.row('  vs 5 x one transfer', onLan.lan_fanout_vs_5x_one, 'JSON: lan_fanout_vs_5x_one')
      t.row('CPU of all 6 processes', `${fmt(onLan.lan_cpu_s_fanout_5)} s`, 'JSON: lan_cpu_s_fanout_5')
      fanoutRows(t, lanFan, `${onLan.lan_fanout_seed_share} (JSON: lan_fanout_seed_share)`)
    } else t.section(`on a virtual LAN: SKIPPED, ${lan as string}`)
    t.print()
  } finally {
    await cleanup.runAll()
  }
  console.log(JSON.stringify(out))
}

if (process.argv[2] === 'child') await runChild()
else await main()
