import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LineSplitter } from '../../src/runner/lines.ts'

function split(chunks: (string | Uint8Array)[], max = 4096): string[] {
  const lines: string[] = []
  const s = new LineSplitter((l) => lines.push(l), max)
  for (const c of chunks) s.push(c)
  s.end()
  return lines
}

describe('LineSplitter', () => {
  it('splits on \\n, \\r\\n and a lone \\r, across chunks', () => {
    assert.deepEqual(split(['a\nb', 'c\r', '\nd\re\r\n', 'f']), ['a', 'bc', 'd', 'e', 'f'])
    assert.deepEqual(split(['\n\n']), ['', ''])
    assert.deepEqual(split(['x\r']), ['x'])
  })

  it('cuts overlong lines with a marker and keeps memory bounded', () => {
    const lines = split(['abcdef', 'ghij\nok'], 4)
    assert.deepEqual(lines, ['abcd [... 6 more characters cut]', 'ok'])
  })

  it('ends the line being read before a note of its own', () => {
    const lines: string[] = []
    const s = new LineSplitter((l) => lines.push(l))
    s.push('half a li')
    s.note('[a note]')
    s.note('[another]')
    s.push('ne\n')
    assert.deepEqual(lines, ['half a li', '[a note]', '[another]', 'ne'])
  })

  it('decodes UTF-8 split across chunks', () => {
    const bytes = new TextEncoder().encode('héllo ✓\n')
    assert.deepEqual(split([bytes.slice(0, 2), bytes.slice(2, 9), bytes.slice(9)]), ['héllo ✓'])
  })
})
