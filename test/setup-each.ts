import { afterEach } from 'vitest';
import { stopAll } from './helpers.js';

afterEach(stopAll);
