// Ready-to-paste setup snippets, filled in with this server's proxy URL and
// the user's key, and the picker that shows them (provider × language × mode).

import { h, replace, copyButton } from './dom.js';

const OPENAI_MODEL = 'gpt-4o-mini';
const ANTHROPIC_MODEL = 'claude-sonnet-4-5';
const CUSTOMER = 'customer-123';

/**
 * Returns the code for one combination.
 * provider: 'openai' | 'anthropic'; lang: 'python' | 'node' | 'curl';
 * mode: 'managed' (the LLMObserve key stands in for the provider key, which
 * is stored in Settings) | 'passthrough' (keep your provider key, add the
 * X-LLMObserve-Key header).
 */
export function snippet({ proxy, key, provider, lang, mode }) {
  const managed = mode !== 'passthrough';
  if (provider === 'anthropic') {
    const base = `${proxy}/anthropic`;
    if (lang === 'python') {
      return [
        managed ? 'from anthropic import Anthropic' : 'import os\nfrom anthropic import Anthropic',
        '',
        'client = Anthropic(',
        `    base_url="${base}",`,
        managed
          ? `    api_key="${key}",  # your LLMObserve key`
          : `    api_key=os.environ["ANTHROPIC_API_KEY"],  # your own Anthropic key\n    default_headers={"X-LLMObserve-Key": "${key}"},`,
        ')',
        '',
        'message = client.messages.create(',
        `    model="${ANTHROPIC_MODEL}",`,
        '    max_tokens=256,',
        '    messages=[{"role": "user", "content": "Hello!"}],',
        `    extra_headers={"X-Customer-Id": "${CUSTOMER}"},  # optional`,
        ')',
        'print(message.content[0].text)',
      ].join('\n');
    }
    if (lang === 'node') {
      return [
        'import Anthropic from "@anthropic-ai/sdk";',
        '',
        'const client = new Anthropic({',
        `  baseURL: "${base}",`,
        managed
          ? `  apiKey: "${key}", // your LLMObserve key`
          : `  apiKey: process.env.ANTHROPIC_API_KEY, // your own Anthropic key\n  defaultHeaders: { "X-LLMObserve-Key": "${key}" },`,
        '});',
        '',
        'const message = await client.messages.create(',
        `  { model: "${ANTHROPIC_MODEL}", max_tokens: 256, messages: [{ role: "user", content: "Hello!" }] },`,
        `  { headers: { "X-Customer-Id": "${CUSTOMER}" } }, // optional`,
        ');',
        'console.log(message.content[0].text);',
      ].join('\n');
    }
    return [
      `curl ${base}/v1/messages \\`,
      managed ? `  -H "x-api-key: ${key}" \\` : `  -H "x-api-key: $ANTHROPIC_API_KEY" \\\n  -H "X-LLMObserve-Key: ${key}" \\`,
      '  -H "anthropic-version: 2023-06-01" \\',
      '  -H "content-type: application/json" \\',
      `  -H "X-Customer-Id: ${CUSTOMER}" \\`,
      `  -d '{"model": "${ANTHROPIC_MODEL}", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}]}'`,
    ].join('\n');
  }

  const base = `${proxy}/v1`;
  if (lang === 'python') {
    return [
      managed ? 'from openai import OpenAI' : 'import os\nfrom openai import OpenAI',
      '',
      'client = OpenAI(',
      `    base_url="${base}",`,
      managed
        ? `    api_key="${key}",  # your LLMObserve key`
        : `    api_key=os.environ["OPENAI_API_KEY"],  # your own OpenAI key\n    default_headers={"X-LLMObserve-Key": "${key}"},`,
      ')',
      '',
      'response = client.chat.completions.create(',
      `    model="${OPENAI_MODEL}",`,
      '    messages=[{"role": "user", "content": "Hello!"}],',
      `    extra_headers={"X-Customer-Id": "${CUSTOMER}"},  # optional`,
      ')',
      'print(response.choices[0].message.content)',
    ].join('\n');
  }
  if (lang === 'node') {
    return [
      'import OpenAI from "openai";',
      '',
      'const client = new OpenAI({',
      `  baseURL: "${base}",`,
      managed
        ? `  apiKey: "${key}", // your LLMObserve key`
        : `  apiKey: process.env.OPENAI_API_KEY, // your own OpenAI key\n  defaultHeaders: { "X-LLMObserve-Key": "${key}" },`,
      '});',
      '',
      'const response = await client.chat.completions.create(',
      `  { model: "${OPENAI_MODEL}", messages: [{ role: "user", content: "Hello!" }] },`,
      `  { headers: { "X-Customer-Id": "${CUSTOMER}" } }, // optional`,
      ');',
      'console.log(response.choices[0].message.content);',
    ].join('\n');
  }
  return [
    `curl ${base}/chat/completions \\`,
    managed ? `  -H "Authorization: Bearer ${key}" \\` : `  -H "Authorization: Bearer $OPENAI_API_KEY" \\\n  -H "X-LLMObserve-Key: ${key}" \\`,
    '  -H "Content-Type: application/json" \\',
    `  -H "X-Customer-Id: ${CUSTOMER}" \\`,
    `  -d '{"model": "${OPENAI_MODEL}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
  ].join('\n');
}

/** The environment variables that point an SDK at the proxy. */
export function envSnippet({ proxy, key, provider, mode }) {
  const managed = mode !== 'passthrough';
  if (provider === 'anthropic') {
    return managed
      ? `export ANTHROPIC_BASE_URL="${proxy}/anthropic"\nexport ANTHROPIC_API_KEY="${key}"`
      : `export ANTHROPIC_BASE_URL="${proxy}/anthropic"\n# keep ANTHROPIC_API_KEY as it is; add the header X-LLMObserve-Key: ${key}`;
  }
  return managed
    ? `export OPENAI_BASE_URL="${proxy}/v1"\nexport OPENAI_API_KEY="${key}"`
    : `export OPENAI_BASE_URL="${proxy}/v1"\n# keep OPENAI_API_KEY as it is; add the header X-LLMObserve-Key: ${key}`;
}

function segmented(name, options, value, onPick) {
  const buttons = options.map(([id, label]) =>
    h('button', { type: 'button', class: 'segment', id: `snippet-${name}-${id}`, 'data-value': id, 'aria-pressed': String(id === value) }, label),
  );
  buttons.forEach((b) =>
    b.addEventListener('click', () => {
      buttons.forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
      onPick(b.dataset.value);
    }),
  );
  return h('div', { class: 'segmented segmented-small', role: 'group', 'aria-label': name }, buttons);
}

/**
 * Renders the picker: provider (OpenAI / Anthropic), language (Python / Node
 * / curl) and mode (managed / pass-through), one code block with a copy
 * button (#copy-snippet), the code in #snippet-code.
 */
export function createSnippetPicker(container, { proxy, key }) {
  const state = { provider: 'openai', lang: 'python', mode: 'managed', proxy, key };
  const code = h('code', { id: 'snippet-code' });
  const env = h('code', { id: 'snippet-env' });
  const modeNote = h('p', { class: 'muted small', id: 'snippet-mode-note' });

  const update = () => {
    code.textContent = snippet(state);
    env.textContent = envSnippet(state);
    code.parentElement.dataset.lang = state.lang;
    const name = state.provider === 'anthropic' ? 'Anthropic' : 'OpenAI';
    modeNote.textContent =
      state.mode === 'managed'
        ? `Managed: your LLMObserve key replaces the ${name} key in your app; the proxy attaches the ${name} key you store in Settings \u2192 Provider keys.`
        : `Pass-through: your app keeps its own ${name} key and adds the header X-LLMObserve-Key; nothing is stored here.`;
  };

  replace(
    container,
    h(
      'div',
      { class: 'snippet-controls' },
      segmented('provider', [['openai', 'OpenAI'], ['anthropic', 'Anthropic']], state.provider, (v) => { state.provider = v; update(); }),
      segmented('lang', [['python', 'Python'], ['node', 'Node'], ['curl', 'curl']], state.lang, (v) => { state.lang = v; update(); }),
      segmented('mode', [['managed', 'Managed'], ['passthrough', 'Pass-through']], state.mode, (v) => { state.mode = v; update(); }),
    ),
    modeNote,
    h('div', { class: 'code-block' }, h('pre', null, code), copyButton(() => code.textContent, { id: 'copy-snippet', label: 'Copy' })),
    h('p', { class: 'muted small' }, 'Or, with no code change, set the environment your SDK already reads:'),
    h('div', { class: 'code-block' }, h('pre', { 'data-lang': 'shell' }, env), copyButton(() => env.textContent, { id: 'copy-env', label: 'Copy' })),
  );
  update();
  return {
    setKey(k) {
      state.key = k;
      update();
    },
  };
}
