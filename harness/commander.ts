/**
 * commander, required as the CommonJS package it is: every appshot command
 * loads it, and through Node's ES module loader (its exports parsed and
 * wrapped) it cost 7-10% of the first page of `appshot tables`.
 */
import { createRequire } from 'node:module';
import type * as Commander from 'commander';

const commander = createRequire(import.meta.url)('commander') as typeof Commander;

export const { Argument, Command, CommanderError, Option } = commander;
export type Argument = Commander.Argument;
export type Command = Commander.Command;
export type CommanderError = Commander.CommanderError;
export type Option = Commander.Option;
