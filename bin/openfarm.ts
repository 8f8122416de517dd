// openfarm: the command line. It parses arguments, calls the node (its local API, or `serve` for
// join), prints, and exits: process.exit lives here and nowhere else.

import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ApiClient, ApiError } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import type { HostFlags } from '../src/node/hostconfig.ts'
import { dataPaths, defaultDataDir } from '../src/node/paths.ts'
import { SELF_TEST_RUNNING, serve } from '../src/node/serve.ts'
import { submitBlender } from './blender.ts'
import { cmdFetch, cmdLogs, parseTaskRef } from './files.ts'
import { cmdHosts, cmdInfo, cmdJobs, type JobSummary, out, setJson, showStatus } from './read.ts'
import { submitBody } from './submit.ts'

const USAGE = `openfarm: a render farm with no master

usage: openfarm COMMAND [options]

  init                      make a new farm key and save it in the data directory
  join                      run this machine's node (foreground; Ctrl-C to leave)
       --key KEY | --key-file FILE   the farm key (only needed the first time)
       --bootstrap MULTIADDR         a peer to dial (repeatable); mDNS finds LAN peers anyway
       --name NAME  --port N  --listen MULTIADDR  --slots N  --no-mdns  --api-port N
       --config FILE (default ~/.config/openfarm/host.json; see docs/host.example.json)
       --tags a,b  --watts-idle W  --watts-loaded W  --price PER_KWH  --currency EUR
       --speed S (skip the benchmark)  --enable-app NAME  --disable-app NAME
       --dead-after SECONDS (when a silent host's tasks are requeued; default 30)
  submit blender SCENE.blend  render a scene: its files travel to the workers, frames come back
       --frames 1-48 (default: the scene's range)  --chunk N (default 4)  --out DIR (frames home)
       --video (then an mp4 of the frames, by ffmpeg, in DIR)  --device cpu|gpu|any
       --app-version 3.4 (the Blender it renders with: 3.4, 3.4-3.6, 3.6+; default: the scene's major.minor)
       --denoise keep|off|require  --overwrite (files already in DIR may be replaced)
       --tiles N (a still: --frames 7 cut into N tiles rendered apart, stitched pixel-exact in DIR)
  submit APP                submit a job from this peer (APP: echo, sleep, command, ffmpeg)
       --frames 1-48  --chunk N  --name NAME  --priority N  --max-retries N
       --depends-on JOB (repeatable)  --depends-on-frames JOB (task i waits for JOB's frames)
       --group NAME (a process group: related jobs)  --set KEY=VALUE (an application setting; repeat it)
       --prefer fast|cheap|balanced  --slack 0.2 (cheap: how much slower than fastest)
       --weights time=1,cost=3  --requires tag=T,memory=MiB,gpu=N,app=VERSION
       --app-version PIN (hosts with such a version: 3.4 takes 3.4.x, 3.4-3.6 up to 3.6.x, 3.6+ newer)
       --license NAME  --not-before 2026-11-24T02:00|+30m  --wait-file PATH  --manual
  jobs                      list the farm's jobs
  status JOB [--watch]      one job and its tasks (--watch: redraw on every change)
  logs JOB/N [--follow]     a task's output, live from whichever peer runs it (--attempt N)
  fetch JOB --out DIR       pull a job's outputs to DIR on this machine (--overwrite: replace
                            files already there; exit 1 when any output is not there after)
  hosts                     the farm's hosts as this node sees them
  info                      this node: peer id, farm, addresses, connected peers
  hold | resume | cancel | retry | release JOB
  rm JOB                    remove a job for good: it stops, leaves every list, and its files
                            (scene, frames) leave every peer's store; what came home stays
  priority JOB N
  license NAME SEATS        farm-wide floating license seats (N seats of a renderer)

common options: --data DIR (default ${defaultDataDir()}), --json (read commands), --help
exit status: 0 done, 1 the farm refused or something failed, 2 the command line is wrong
`

class UsageError extends Error {
  static override readonly name = 'UsageError'
  override readonly name = 'UsageError'
}

const OPTIONS = {
  data: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  key: { type: 'string' },
  'key-file': { type: 'string' },
  force: { type: 'boolean', default: false },
  bootstrap: { type: 'string', multiple: true },
  name: { type: 'string' },
  port: { type: 'string' },
  listen: { type: 'string', multiple: true },
  slots: { type: 'string' },
  'no-mdns': { type: 'boolean', default: false },
  'enable-app': { type: 'string', multiple: true },
  'disable-app': { type: 'string', multiple: true },
  'api-port': { type: 'string' },
  frames: { type: 'string' },
  chunk: { type: 'string' },
  priority: { type: 'string' },
  'max-retries': { type: 'string' },
  'depends-on': { type: 'string', multiple: true },
  set: { type: 'string', multiple: true },
  group: { type: 'string' },
  'depends-on-frames': { type: 'string', multiple: true },
  prefer: { type: 'string' },
  slack: { type: 'string' },
  weights: { type: 'string' },
  requires: { type: 'string', multiple: true },
  'app-version': { type: 'string' },
  license: { type: 'string' },
  'not-before': { type: 'string' },
  'wait-file': { type: 'string' },
  manual: { type: 'boolean', default: false },
  watch: { type: 'boolean', default: false },
  out: { type: 'string' },
  video: { type: 'boolean', default: false },
  device: { type: 'string' },
  denoise: { type: 'string' },
  overwrite: { type: 'boolean', default: false },
  tiles: { type: 'string' },
  follow: { type: 'boolean', short: 'f', default: false },
  attempt: { type: 'string' },
  'dead-after': { type: 'string' },
  config: { type: 'string' },
  tags: { type: 'string' },
  'watts-idle': { type: 'string' },
  'watts-loaded': { type: 'string' },
  price: { type: 'string' },
  currency: { type: 'string' },
  speed: { type: 'string' },
} as const

/** Node's own messages say what was wrong and how to write it (`--chunk=-2`, `-- -5`). */
function parseOptions() {
  try {
    return parseArgs({ allowPositionals: true, options: OPTIONS })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (!code.startsWith('ERR_PARSE_ARGS_')) throw err
    console.error(`openfarm: ${(err as Error).message}\nsee openfarm --help`)
    process.exit(2)
  }
}

const { values: opt, positionals } = parseOptions()

const dataDir = opt.data ?? defaultDataDir()

/** `--name`'s value (or, with a word in capitals, a positional argument's) as a whole number. */
function int(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  const what = name === name.toUpperCase() ? name : `--${name}`
  if (text.trim() === '' || !Number.isSafeInteger(n))
    throw new UsageError(`${what} must be a whole number, not ${JSON.stringify(text)}`)
  return n
}

async function cmdInit(): Promise<void> {
  const path = dataPaths(dataDir).farmKey
  const existing = await FarmKey.load(path).catch(() => undefined)
  if (existing !== undefined && !opt.force) {
    throw new UsageError(
      `${dataDir} already belongs to farm ${existing.farmId()}; use another --data, or --force`,
    )
  }
  const { mkdir } = await import('node:fs/promises')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = FarmKey.generate()
  await key.save(path)
  console.log(`new farm ${key.farmId()}; key saved in ${path} (keep it secret: it is the only way in)\n`)
  console.log(`farm key: ${key.hex}\n`)
  const data = opt.data === undefined ? '' : ` --data ${opt.data}`
  console.log(`start this machine:     openfarm join${data}`)
  console.log(`on every other machine: openfarm join --key ${key.hex}`)
}

async function cmdJoin(): Promise<void> {
  let key: FarmKey | undefined
  if (opt.key !== undefined) key = FarmKey.parse(opt.key)
  else if (opt['key-file'] !== undefined) key = FarmKey.parse(await readFile(opt['key-file'], 'utf8'))
  else if (process.env.OPENFARM_KEY) key = FarmKey.parse(process.env.OPENFARM_KEY)
  const port = int('port', opt.port) ?? 0
  const deadAfter = int('dead-after', opt['dead-after'])
  const flags: HostFlags = {
    ...(opt.name === undefined ? {} : { name: opt.name }),
    ...(opt.slots === undefined ? {} : { slots: opt.slots }),
    ...(opt.tags === undefined ? {} : { tags: opt.tags }),
    ...(opt['watts-idle'] === undefined ? {} : { wattsIdle: opt['watts-idle'] }),
    ...(opt['watts-loaded'] === undefined ? {} : { wattsLoaded: opt['watts-loaded'] }),
    ...(opt.price === undefined ? {} : { price: opt.price }),
    ...(opt.currency === undefined ? {} : { currency: opt.currency }),
    ...(opt.speed === undefined ? {} : { speed: opt.speed }),
    enableApps: opt['enable-app'] ?? [],
    disableApps: opt['disable-app'] ?? [],
  }
  const running = await serve({
    dataDir,
    ...(key === undefined ? {} : { key }),
    ...(opt.config === undefined ? {} : { configFile: opt.config }),
    flags,
    listen: opt.listen ?? [`/ip4/0.0.0.0/tcp/${port}`],
    bootstrap: opt.bootstrap ?? [],
    mdns: !opt['no-mdns'],
    apiPort: int('api-port', opt['api-port']) ?? 0,
    ...(deadAfter === undefined
      ? {}
      : { deadAfterMs: deadAfter * 1000, suspectAfterMs: Math.min(5000, deadAfter * 500) }),
  })
  const { node } = running
  console.log(`joined farm ${node.key.farmId()} as ${node.name} (${node.peerId})`)
  if (node.loaded.updates > 0) console.log(`replica loaded from disk: ${node.farm.views().length} job(s)`)
  const printApps = () => {
    const apps = running.apps.map((a) => `${a.name}${a.version ? ` ${a.version}` : ''}`)
    console.log(`apps: ${apps.join(', ') || 'none'}`)
    for (const u of running.unavailable) console.log(`app ${u.name} not available: ${u.reason}`)
  }
  printApps()
  console.log('other machines can join with --bootstrap and one of:')
  for (const a of node.addresses()) console.log(`  ${a}`)
  console.log(`local API: ${running.apiUrl} (Ctrl-C to leave the farm)`)
  // a first start self-tests its applications while it is already in the farm: say what they found
  if (running.unavailable.some((u) => u.reason === SELF_TEST_RUNNING)) void running.appsReady.then(printApps)
  let seen = 0
  const report = setInterval(() => {
    const errs = node.recentDialErrors()
    for (const e of errs.slice(seen)) console.error(`openfarm: ${e}`)
    seen = errs.length
  }, 1000)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  clearInterval(report)
  console.log('leaving the farm: handing back running tasks, saving the replica…')
  for (const problem of await running.stop()) console.error(`openfarm: while leaving, ${problem}`)
}

async function cmdSubmit(
  client: ApiClient,
  app: string | undefined,
  file: string | undefined,
): Promise<void> {
  if (app === undefined)
    throw new UsageError(
      'submit needs an application: openfarm submit blender scene.blend, or echo --frames 1-10',
    )
  if (app === 'blender') {
    await submitBlender(client, file, opt, Date.now(), dataDir)
    return
  }
  // the API resolves dependency id prefixes; frame-by-frame ones too
  const body = {
    ...submitBody(app, opt, Date.now()),
    ...(opt.out === undefined ? {} : { out: resolve(opt.out), overwrite: opt.overwrite }),
  }
  const job = await client.post<JobSummary & { noHost: string | null }>('/v1/jobs', body)
  out(job, () =>
    [
      `submitted ${job.id}: ${job.name} (${job.tasks} task${job.tasks === 1 ? '' : 's'}, ${job.state})`,
      ...(job.noHost ? [`no host can run it now: ${job.noHost}`] : []),
    ].join('\n'),
  )
}

async function cmdLicense(
  client: ApiClient,
  name: string | undefined,
  seats: string | undefined,
): Promise<void> {
  if (name === undefined || seats === undefined)
    throw new UsageError('license needs a name and seats: openfarm license redshift 2')
  const r = await client.post<{ message: string }>('/v1/licenses', { name, seats: int('SEATS', seats) })
  out(r, () => r.message)
}

async function cmdStatus(client: ApiClient, id: string | undefined): Promise<void> {
  if (id === undefined) throw new UsageError('status needs a job id: openfarm status JOB')
  if (!opt.watch) return showStatus(client, id)
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  const draw = async () => {
    if (!opt.json) process.stdout.write('\x1b[2J\x1b[H')
    await showStatus(client, id)
  }
  await draw()
  await client.watch(draw, stop.signal)
}

async function cmdAction(
  client: ApiClient,
  action: string,
  id: string | undefined,
  value?: string,
): Promise<void> {
  const verb = action === 'remove' ? 'rm' : action
  if (id === undefined) throw new UsageError(`${verb} needs a job id: openfarm ${verb} JOB`)
  const body = action === 'priority' ? { value: int('N', value) } : {}
  if (action === 'priority' && value === undefined)
    throw new UsageError('priority needs a value: openfarm priority JOB N')
  const r = await client.post<{ message: string }>(`/v1/jobs/${encodeURIComponent(id)}/${action}`, body)
  out(r, () => r.message)
}

async function main(): Promise<void> {
  setJson(opt.json)
  const [cmd, ...args] = positionals
  if (opt.help || cmd === undefined || cmd === 'help') {
    console.log(USAGE)
    return
  }
  if (cmd === 'init') return cmdInit()
  if (cmd === 'join') return cmdJoin()
  const client = await ApiClient.connect(dataDir)
  switch (cmd) {
    case 'submit':
      return cmdSubmit(client, args[0], args[1])
    case 'logs':
      return cmdLogs(client, parseTaskRef(args[0], args[1]), {
        follow: opt.follow,
        attempt: int('attempt', opt.attempt),
      })
    case 'fetch':
      return cmdFetch(client, args[0], opt.out, { overwrite: opt.overwrite })
    case 'jobs':
      return cmdJobs(client)
    case 'status':
      return cmdStatus(client, args[0])
    case 'hosts':
      return cmdHosts(client)
    case 'info':
      return cmdInfo(client)
    case 'hold':
    case 'resume':
    case 'cancel':
    case 'retry':
    case 'release':
      return cmdAction(client, cmd, args[0])
    case 'rm':
      return cmdAction(client, 'remove', args[0])
    case 'license':
      return cmdLicense(client, args[0], args[1])
    case 'priority':
      return cmdAction(client, cmd, args[0], args[1])
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}; see openfarm --help`)
  }
}

// `openfarm logs JOB/3 | head`: the reader left, which ends the command as it ends `cat`, quietly
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

/**
 * Exits once what was written reached the terminal or pipe: writes to a pipe are asynchronous, and a
 * bare process.exit() cut long outputs (`logs` of a whole chunk) short.
 */
function exit(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

main().then(
  () => exit(0),
  (err: Error) => {
    const name = err instanceof ApiError ? err.remoteName : err.name
    const known = name !== 'Error' && name !== 'TypeError' && name !== 'RangeError'
    console.error(`openfarm: ${err.message}`)
    if (!known && process.env.DEBUG) console.error(err.stack)
    exit(err.name === 'UsageError' ? 2 : 1)
  },
)
