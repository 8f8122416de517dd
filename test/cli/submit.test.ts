// `openfarm submit`'s flags, as the node's API receives them (bin/submit.ts).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SubmitUsageError, submitBody } from '../../bin/submit.ts'

describe('submit flags', () => {
  it('take each --set whole: a value may hold commas, as the command application argv does', () => {
    const body = submitBody('command', { set: ['argv=["make","-j4"]', 'note=a, b'] }, 0)
    assert.deepEqual(body.settings, { argv: '["make","-j4"]', note: 'a, b' })
  })

  it('refuse a --set without KEY=', () => {
    assert.throws(() => submitBody('echo', { set: ['hi'] }, 0), SubmitUsageError)
    assert.throws(() => submitBody('echo', { set: ['=hi'] }, 0), /--set takes KEY=VALUE, not "=hi"/)
  })

  it('still split --requires and --weights on commas', () => {
    const body = submitBody('echo', { requires: ['tag=studio,memory=8192'], weights: 'time=1,cost=3' }, 0)
    assert.deepEqual(body.requires, { tags: ['studio'], memoryMb: 8192 })
    assert.deepEqual(body.policy, { kind: 'weights', time: 1, cost: 3 })
  })
})
