// Provoke the ftrace-layer drop: kernel FPU use inside an ftrace callback that already holds the
// ftrace recursion bit of its context and the transition bit (two nested trylocks), so the
// kprobe_ftrace_handler of a kprobe on kernel_fpu_begin_mask fails its own trylock.
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/trace_recursion.h>
#include <asm/fpu/api.h>

static int depth = 2;
module_param(depth, int, 0444);
static atomic_t sections = ATOMIC_INIT(0);

static void notrace cb(unsigned long ip, unsigned long pip, struct ftrace_ops *op, struct ftrace_regs *fr)
{
	int b1 = -1, b2 = -1;
	b1 = ftrace_test_recursion_trylock(ip, pip);
	if (b1 < 0)
		return;
	if (depth > 1) {
		b2 = ftrace_test_recursion_trylock(ip, pip);
		if (b2 < 0)
			goto out;
	}
	kernel_fpu_begin();
	kernel_fpu_end();
	atomic_inc(&sections);
	if (b2 >= 0)
		ftrace_test_recursion_unlock(b2);
out:
	ftrace_test_recursion_unlock(b1);
}

static struct ftrace_ops ops = { .func = cb };

static int __init fpurec_init(void)
{
	int err = ftrace_set_filter(&ops, "__do_sys_getppid", strlen("__do_sys_getppid"), 0);
	if (err) {
		pr_err("fpurec: ftrace_set_filter: %d\n", err);
		return err;
	}
	err = register_ftrace_function(&ops);
	if (err)
		pr_err("fpurec: register_ftrace_function: %d\n", err);
	return err;
}

static void __exit fpurec_exit(void)
{
	unregister_ftrace_function(&ops);
	pr_info("fpurec: %d kernel FPU sections from the callback (depth %d)\n", atomic_read(&sections), depth);
}
module_init(fpurec_init);
module_exit(fpurec_exit);
MODULE_LICENSE("GPL");
