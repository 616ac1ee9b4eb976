import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { InvalidQuantityError } from '../../src/workloads/errors.js'
import { formatCpu, formatMemory, parseCpu, parseMemory, formatMemoryApprox } from '../../src/workloads/quantities.js'

const Ki = 1024
const Mi = 1024 * Ki
const Gi = 1024 * Mi

function throwsQuantity (f: () => unknown, pattern: RegExp): void {
  try {
    f()
  } catch (err) {
    assert.instance(err, InvalidQuantityError)
    assert.is((err as Error).name, 'InvalidQuantityError')
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected InvalidQuantityError matching ${String(pattern)}`)
}

test('CPU: millicores, cores and numbers', () => {
  assert.is(parseCpu('100m'), 100)
  assert.is(parseCpu('0.5'), 500)
  assert.is(parseCpu(2), 2000)
  assert.is(parseCpu('1.5'), 1500)
  assert.is(parseCpu(0.25), 250)
  assert.is(parseCpu('0'), 0)
  assert.is(parseCpu('1e3m'), 1000)
  assert.is(parseCpu('2e-1'), 200)
})

test('CPU: decimal arithmetic is exact and fractions of a millicore round up', () => {
  assert.is(parseCpu('1.1'), 1100)
  assert.is(parseCpu('0.3'), 300)
  assert.is(parseCpu('0.0001'), 1)
  assert.is(parseCpu('1.5m'), 2)
})

test('memory: binary and decimal suffixes, plain bytes and exponents', () => {
  assert.is(parseMemory('64Mi'), 64 * Mi)
  assert.is(parseMemory('1Gi'), Gi)
  assert.is(parseMemory('500M'), 500_000_000)
  assert.is(parseMemory('1k'), 1000)
  assert.is(parseMemory('1Ki'), Ki)
  assert.is(parseMemory('2Ti'), 2 * 1024 * Gi)
  assert.is(parseMemory('1G'), 1e9)
  assert.is(parseMemory('3T'), 3e12)
  assert.is(parseMemory('1.5Gi'), 1.5 * Gi)
  assert.is(parseMemory('0.5Ki'), 512)
  assert.is(parseMemory(1024), 1024)
  assert.is(parseMemory('4096'), 4096)
  assert.is(parseMemory('1e3'), 1000)
  assert.is(parseMemory('1E3'), 1000)
  assert.is(parseMemory(' 64Mi '), 64 * Mi)
})

test('invalid quantities name the value and what is expected', () => {
  throwsQuantity(() => parseCpu('-1'), /invalid CPU quantity "-1": expected a non-negative number of cores/)
  throwsQuantity(() => parseCpu(-0.5), /invalid CPU quantity -0\.5: expected/)
  throwsQuantity(() => parseCpu('abc'), /"abc".*millicores \("100m"\)/)
  throwsQuantity(() => parseCpu('1Gi'), /invalid CPU quantity "1Gi"/)
  throwsQuantity(() => parseCpu(''), /invalid CPU quantity "": expected/)
  throwsQuantity(() => parseCpu(Number.NaN), /invalid CPU quantity NaN/)
  throwsQuantity(() => parseMemory('10Mx'), /invalid memory quantity "10Mx": expected a non-negative number of bytes.*Mi/)
  throwsQuantity(() => parseMemory('abc'), /"abc"/)
  throwsQuantity(() => parseMemory(''), /invalid memory quantity ""/)
  throwsQuantity(() => parseMemory(-1), /invalid memory quantity -1/)
  throwsQuantity(() => parseMemory('-64Mi'), /"-64Mi"/)
  throwsQuantity(() => parseMemory(Number.NaN), /NaN/)
  throwsQuantity(() => parseMemory(Number.POSITIVE_INFINITY), /Infinity/)
  throwsQuantity(() => parseMemory('1.2.3'), /"1\.2\.3"/)
  throwsQuantity(() => parseMemory('Mi'), /"Mi"/)
  throwsQuantity(() => parseMemory(null as unknown as string), /invalid memory quantity null/)
})

test('memory: the milli suffix is refused with a hint, huge values are refused', () => {
  throwsQuantity(() => parseMemory('500m'), /"500m": the suffix "m" means thousandths of a byte; use "M"/)
  throwsQuantity(() => parseMemory('1e30'), /too large/)
  throwsQuantity(() => parseMemory('1e999999999'), /exponent is out of range/)
  assert.is(parseMemory('0e999999999'), 0)
})

test('formatCpu shows millicores or whole cores', () => {
  assert.is(formatCpu(100), '100m')
  assert.is(formatCpu(2000), '2')
  assert.is(formatCpu(1500), '1500m')
  assert.is(formatCpu(0), '0')
})

test('formatMemory picks the exact suffix with the smallest number', () => {
  assert.is(formatMemory(64 * Mi), '64Mi')
  assert.is(formatMemory(Gi), '1Gi')
  assert.is(formatMemory(1.5 * Gi), '1536Mi')
  assert.is(formatMemory(500_000_000), '500M')
  assert.is(formatMemory(1000), '1k')
  assert.is(formatMemory(1024), '1Ki')
  assert.is(formatMemory(1536), '1536')
  assert.is(formatMemory(0), '0')
  for (const q of ['64Mi', '1Gi', '500M', '3T', '12345', '7Ki']) assert.is(formatMemory(parseMemory(q)), q)
})

test('formatMemoryApprox rounds for people', () => {
  assert.is(formatMemoryApprox(512), '512B')
  assert.is(formatMemoryApprox(64 * 1024 * 1024), '64Mi')
  assert.is(formatMemoryApprox(1.5 * 1024 ** 3), '1.5Gi')
  assert.is(formatMemoryApprox(0), '0B')
})

test.run()
