/*
 * chat.js: the chat page of both apps, started by its entry module: main.js on the
 * character page, office/main.js on the office page; each passes its app's hooks
 * (hooks.js), so that neither page loads the other's code.
 *
 * The page is a static shell (templates/chat/index.html): its settings come from
 * <script id="page-config"> (state.js); personas, conversations and history come over
 * REST (api.js), replies stream over one WebSocket (socket.js, stream.js).
 *
 * Safety: text from the model, the user or a persona is only ever placed with
 * textContent or through markdown.js's render (which builds DOM nodes itself); no
 * module assigns innerHTML with such text.
 *
 * Debug/test handle: window.personaChat (read-only): ws, state, config.
 * document.body.dataset.ready = "true" once personas and the conversation list loaded.
 */
import { USERNAME, UUID_RE, config, state } from './state.js';
import { els } from './dom.js';
import { bannerRender, errorClear, errorShow } from './banner.js';
import { composerUpdate, inputAutogrow, submitInput } from './composer.js';
import { chatImport, conversationsLoad, newChat, openConversation, relativeTime } from './conversations.js';
import { drawerClose, drawerOpen, isPhone, phoneQuery } from './drawer.js';
import { hooks } from './hooks.js';
import { healthCheck } from './model.js';
import { personasLoad } from './personas.js';
import { searchBind } from './search.js';
import { wsConnect } from './socket.js';
import { stopGeneration } from './stream.js';
import { nearBottom, scrollToBottom } from './thread.js';

/** The shared page's events (an app's own are bound by hooks.bind). */
function bind() {
  els.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    if (state.stream) stopGeneration();
    else submitInput();
  });

  els.input.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    // IME: Enter that confirms a Hangul (or other) composition must not send.
    if (event.isComposing || event.keyCode === 229) return;
    if (event.shiftKey || event.altKey) return;
    event.preventDefault();
    submitInput();
  });

  els.input.addEventListener('input', () => {
    inputAutogrow();
    composerUpdate();
  });

  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.isComposing) return;
    if (hooks.escape()) {
      event.preventDefault(); // office: it closed the Tools menu
    } else if (state.stream) {
      event.preventDefault();
      stopGeneration();
    } else if (els.layout.classList.contains('sidebar-open')) {
      drawerClose();
      els.menuButton.focus();
    }
  });

  els.newChat.addEventListener('click', () => newChat(state.persona));
  els.chatImport.addEventListener('change', () => {
    const file = els.chatImport.files && els.chatImport.files[0];
    els.chatImport.value = '';
    if (file) chatImport(file);
  });
  els.picker.addEventListener('change', () => newChat(els.picker.value));
  searchBind();

  els.menuButton.addEventListener('click', drawerOpen);
  els.sidebarClose.addEventListener('click', () => {
    drawerClose();
    els.menuButton.focus();
  });
  els.backdrop.addEventListener('click', drawerClose);
  phoneQuery.addEventListener('change', () => {
    if (!isPhone()) drawerClose();
  });

  els.errorDismiss.addEventListener('click', errorClear);

  els.scroller.addEventListener('scroll', () => {
    els.jumpBottom.hidden = nearBottom();
  }, { passive: true });
  els.jumpBottom.addEventListener('click', scrollToBottom);

  window.addEventListener('hashchange', () => {
    const id = location.hash.slice(1);
    if (UUID_RE.test(id) && id !== state.dbId) openConversation(id);
  });

  window.addEventListener('online', () => {
    if (state.conn === 'closed') wsConnect();
  });

  hooks.bind();

  // Relative times age; refresh their text now and then (not the whole list, which
  // would take focus away from a button the user is on).
  setInterval(() => {
    els.convList.querySelectorAll('time').forEach((t) => {
      t.textContent = relativeTime(t.dateTime);
    });
  }, 60000);
}

/** Personas and the list of chats, asked again until the app answers. */
async function loadInitial() {
  let delay = 1000;
  for (;;) {
    try {
      await Promise.all([personasLoad(), conversationsLoad()]);
      errorClear();
      return;
    } catch (err) {
      errorShow({ code: err.code, message: `Could not load this app's personas and chats (${err.message}). Retrying…` });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
}

async function init() {
  if (config.other_app) {
    els.appSwitch.href = config.other_app.href;
    els.appSwitchTitle.textContent = config.other_app.title;
  }
  els.modelName.textContent = state.model.name;
  bind();
  bannerRender();
  composerUpdate();
  wsConnect();
  healthCheck();
  await loadInitial();
  hooks.start();
  const hashId = location.hash.slice(1);
  if (UUID_RE.test(hashId)) {
    newChat(state.defaultPersona);
    await openConversation(hashId);
  } else {
    newChat(state.defaultPersona);
  }
  document.body.dataset.ready = 'true';
}

/** Starts the page; `appHooks` (main.js, office/main.js) adds an app's features to the shared chat. */
export function chatStart(appHooks) {
  Object.assign(hooks, appHooks || {});
  window.personaChat = Object.freeze({
    get ws() {
      return state.ws;
    },
    get state() {
      return Object.freeze({
        app: config.app,
        username: USERNAME,
        conn: state.conn,
        model: state.model.state,
        modelName: state.model.name,
        dbId: state.dbId,
        stored: state.stored,
        persona: state.persona,
        streaming: Boolean(state.stream),
        queuePosition: state.queuePosition,
        busy: state.busy ? state.busy.seconds : null,
        conversations: state.conversations.length,
        options: hooks.messageOptions(),
      });
    },
    config: Object.freeze(Object.assign({}, config)),
  });
  init();
}
