/**
 * commander, the one place every command takes it and its types from. The
 * appshot command runs as one bundle (scripts/bundle.mjs), into which
 * commander is compiled with the rest, so a plain import is all it takes.
 */
export { Argument, Command, CommanderError, Option } from 'commander';
