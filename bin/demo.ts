// npm run demo: a farm of three peers on this machine (what `openfarm join` does on three machines),
// a job submitted on the third, watched from the first until every task is DONE.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiClient } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import { type RunningNode, serve } from '../src/node/serve.ts'
import { counts, short, table } from './format.ts'

interface Job {
  id: string
  state: string
  counts: Record<string, number>
  tasks: { index: number; state: string; owner: string | null }[]
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'openfarm-demo-'))
  const key = FarmKey.generate()
  const nodes: RunningNode[] = []
  try {
    console.log(`farm ${key.farmId()}: starting three peers on 127.0.0.1 (data in ${dir})`)
    for (const name of ['attic', 'desk', 'laptop']) {
      const bootstrap = nodes.length > 0 ? [nodes[0]!.node.addresses()[0]!] : []
      const n = await serve({
        dataDir: join(dir, name),
        key,
        configFile: null,
        flags: { name, slots: '2' },
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap,
        mdns: false,
      })
      nodes.push(n)
      console.log(`  ${name}: ${n.node.peerId}`)
    }
    const [attic, , laptop] = nodes.map((n) => n.node)
    const names = new Map(nodes.map((n) => [n.node.peerId, n.node.name]))
    const waitUntil = async (what: string, ok: () => boolean) => {
      const end = Date.now() + 20_000
      while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    await waitUntil('the peers to see each other', () =>
      nodes.every((n) => n.node.hosts().filter((h) => h.liveness === 'alive').length === 3),
    )
    console.log('\nthe three peers see each other (openfarm hosts on attic):\n')
    console.log(
      table(
        ['HOST', 'STATE', 'SLOTS', 'APPS'],
        attic!
          .hosts()
          .map((h) => [h.name, h.liveness, `${h.free}/${h.slots} free`, h.apps.map((a) => a.name).join(',')]),
      ),
    )
    const onLaptop = await ApiClient.connect(join(dir, 'laptop'))
    const onAttic = await ApiClient.connect(join(dir, 'attic'))
    console.log('\n$ openfarm submit sleep --frames 1-12 --chunk 2 --set seconds=1   # on laptop')
    const job = await onLaptop.post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      name: 'demo',
      frames: '1-12',
      chunk: 2,
      settings: { seconds: 1 },
    })
    console.log(`submitted ${job.id} on laptop (${laptop!.peerId})\n`)
    console.log(`$ openfarm status ${job.id}   # on attic, every second`)
    const started = Date.now()
    for (;;) {
      const j = await onAttic.get<Job>(`/v1/jobs/${job.id}`)
      const where = j.tasks.map((t) => `${t.index}:${t.owner === null ? '-' : names.get(t.owner)}`).join(' ')
      console.log(
        `  ${((Date.now() - started) / 1000).toFixed(1)}s  ${j.state.padEnd(5)} ${counts(j.counts)}   ${where}`,
      )
      if (j.state === 'DONE' || j.state === 'FAIL') {
        console.log(
          `\n${table(
            ['TASK', 'STATE', 'HOST'],
            j.tasks.map((t) => [
              String(t.index),
              t.state,
              t.owner === null ? '-' : `${names.get(t.owner)} (${short(t.owner)})`,
            ]),
          )}`,
        )
        console.log(
          `\njob ${j.state} in ${((Date.now() - started) / 1000).toFixed(1)} s on three peers, no master.`,
        )
        console.log('Next: `npx openfarm init`, then `npx openfarm join` on each machine (see README.md).')
        return
      }
      await new Promise((r) => setTimeout(r, 1000))
    }
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`demo failed: ${err.message}`)
    process.exit(1)
  },
)
