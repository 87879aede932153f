import { Argument, type Command } from '../commander.js';

export function register(program: Command): void {
  program
    .command('completion')
    .description("print a script that completes appshot's commands, options, their values and AIDs in bash or zsh; load it with: source <(appshot completion bash)")
    .usage('bash|zsh')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .action(async (shell: 'bash' | 'zsh') => {
      const { completionScript } = await import('../completion.js');
      process.stdout.write(completionScript(shell));
    });

  // What the script asks at each TAB: the words typed so far after `--`.
  program
    .command('__complete', { hidden: true })
    .argument('<shell>')
    .argument('[words...]')
    .helpOption(false)
    .allowUnknownOption()
    .action(async (shell: 'bash' | 'zsh', words: string[]) => {
      const { complete } = await import('../completion.js');
      process.stdout.write(complete(program, shell === 'zsh' ? 'zsh' : 'bash', words));
    });
}
