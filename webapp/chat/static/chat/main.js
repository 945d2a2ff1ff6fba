/*
 * main.js: the entry module of the character page. The shared chat with no extra
 * features; the office page loads office/main.js instead.
 */
import { chatStart } from './chat.js';

chatStart();
