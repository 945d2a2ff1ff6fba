/*
 * personas.js: the app's personas (GET /personas; on the character page the whole
 * character library, through hooks.personasList) and the picker in the top bar.
 */
import { state } from './state.js';
import { els, node } from './dom.js';
import { api } from './api.js';
import { hooks } from './hooks.js';

export async function personasLoad() {
  const data = await api('/personas');
  const personas = await hooks.personasList(data.personas || []);
  state.personas.clear();
  for (const p of personas) state.personas.set(p.id, p);
  const first = state.personas.keys().next().value || null;
  state.defaultPersona = state.personas.has(data.default) ? data.default : first;
  pickerBuild();
  if (state.persona) pickerSync();
}

function pickerBuild() {
  const options = [];
  for (const p of state.personas.values()) {
    const option = node('option', null, p.name);
    option.value = p.id;
    option.title = p.description || '';
    if (p.language) option.lang = p.language;
    options.push(option);
  }
  els.picker.replaceChildren(...options);
  els.picker.disabled = options.length === 0;
}

/** Shows state.persona in the picker, adding an entry for an unknown (inline) one. */
export function pickerSync() {
  els.picker.querySelectorAll('option[data-extra]').forEach((o) => o.remove());
  if (state.persona && !state.personas.has(state.persona)) {
    const option = node('option', null, `${state.persona} (not in this list)`);
    option.value = state.persona;
    option.dataset.extra = 'true';
    option.disabled = true;
    els.picker.append(option);
  }
  els.picker.value = state.persona || '';
  els.picker.title = (state.personas.get(state.persona) || {}).description || '';
}
