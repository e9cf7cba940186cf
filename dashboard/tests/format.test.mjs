// Unit tests for the dashboard's formatting: `node --test dashboard/tests/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { money, int, compact, percent, duration, relative, moneyAxis } from '../assets/js/format.js';

test('money: at least $1 has two decimals and thousands separators', () => {
  assert.equal(money('1234.56'), '$1,234.56');
  assert.equal(money('1234.555'), '$1,234.56');
  assert.equal(money('1'), '$1.00');
  assert.equal(money('1000000'), '$1,000,000.00');
  assert.equal(money('999.999'), '$1,000.00');
  assert.equal(money('12.3456789012345678'), '$12.35');
});

test('money: below $1 keeps up to 4 significant digits, at most 6 decimals', () => {
  assert.equal(money('0.0042'), '$0.0042');
  assert.equal(money('0.0002832'), '$0.000283');
  assert.equal(money('0.5'), '$0.50');
  assert.equal(money('0.1'), '$0.10');
  assert.equal(money('0.12345'), '$0.1235');
  assert.equal(money('0.123449'), '$0.1234');
  assert.equal(money('0.01999'), '$0.01999');
  assert.equal(money('0.019999'), '$0.02');
  assert.equal(money('0.99996'), '$1.00');
  assert.equal(money('0.0000015'), '$0.000002');
  assert.equal(money('0.0000000001'), '<$0.000001');
  assert.equal(money('.25'), '$0.25');
});

test('money: zero, null and junk', () => {
  assert.equal(money('0'), '$0.00');
  assert.equal(money('0.000000000'), '$0.00');
  assert.equal(money(null), '\u2014');
  assert.equal(money(undefined), '\u2014');
  assert.equal(money('abc'), '\u2014');
  assert.equal(money(0.25), '$0.25');
});

test('counts, shares, durations', () => {
  assert.equal(int(1234567), '1,234,567');
  assert.equal(int(null), '\u2014');
  assert.equal(compact(950), '950');
  assert.equal(compact(12345), '12k');
  assert.equal(compact(1500), '1.5k');
  assert.equal(compact(4_500_000), '4.5M');
  assert.equal(percent(0.4234), '42%');
  assert.equal(percent(0.035), '3.5%');
  assert.equal(percent(0.0001), '<0.1%');
  assert.equal(percent(0), '0%');
  assert.equal(duration(812), '812 ms');
  assert.equal(duration(1240), '1.24 s');
  assert.equal(duration(null), '\u2014');
});

test('relative time and axis money', () => {
  const now = Date.parse('2026-11-25T12:00:00Z');
  assert.equal(relative('2026-11-25T11:59:50Z', now), 'just now');
  assert.equal(relative('2026-11-25T11:55:00Z', now), '5 min ago');
  assert.equal(relative('2026-11-25T09:00:00Z', now), '3 h ago');
  assert.equal(relative('2026-11-23T12:00:00Z', now), '2 days ago');
  assert.equal(relative(null, now), 'never');
  assert.equal(moneyAxis(0), '$0');
  assert.equal(moneyAxis(0.05), '$0.05');
  assert.equal(moneyAxis(12.5), '$12.5');
  assert.equal(moneyAxis(15000), '$15k');
});
