// SPDX-License-Identifier: GPL-2.0
/*
 * skiff_fsnotify: file-change events for host folders shared into the Skiff VM.
 *
 * virtio-fs shows the guest what the host changed on its next lookup or read, but the guest
 * kernel never hears of the change, so inotify and fanotify watchers in containers (webpack,
 * nodemon, `go run` reloaders) stay silent. Skiff's host daemon watches the folders containers
 * bind-mount and forwards each change; the agent writes it here, one record per write(2), and
 * this module raises the event the guest's VFS would have raised had the change been made in
 * the guest: IN_MODIFY + IN_CLOSE_WRITE, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO
 * (one cookie). Only the event is raised: nothing on the file system is touched.
 *
 * A record: struct skiff_fsnotify_record, then `len1` bytes of an absolute path and `len2`
 * bytes of a second one (the destination of a move), without NULs.
 */
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/namei.h>
#include <linux/fsnotify.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/capability.h>

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Skiff");
MODULE_DESCRIPTION("File-change events from the host for virtio-fs shares");

enum {
	OP_MODIFY = 1,
	OP_ATTRIB = 2,
	OP_CREATE = 3,
	OP_DELETE = 4,
	OP_MOVE = 5,
};

#define FLAG_DIR 1

struct skiff_fsnotify_record {
	__u8 op;
	__u8 flags;
	__u16 len1;
	__u16 len2;
} __packed;

/* The directory holding absolute `path`, and the last component's name (pointing into `path`). */
static int lookup_parent(const char *path, struct path *parent, struct qstr *name)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int err;

	if (path[0] != '/' || !slash || slash[1] == '\0')
		return -EINVAL;
	dir = kstrndup(path, slash == path ? 1 : slash - path, GFP_KERNEL);
	if (!dir)
		return -ENOMEM;
	err = kern_path(dir, LOOKUP_FOLLOW | LOOKUP_DIRECTORY, parent);
	kfree(dir);
	if (err)
		return err;
	*name = (struct qstr)QSTR_INIT(slash + 1, strlen(slash + 1));
	return 0;
}

static int name_event(const char *path, __u32 mask, u32 cookie);

/*
 * An event about the file at `path` itself (to its watchers and its directory's). A file gone
 * again since the host changed it (written, then renamed or deleted within one batch) still
 * has its event told to its directory's watchers, by name.
 */
static int file_event(const char *path, __u32 mask)
{
	struct path p;
	int err = kern_path(path, 0, &p);

	if (err == -ENOENT)
		return name_event(path, mask, 0);
	if (err)
		return err;
	fsnotify_parent(p.dentry, mask, &p, FSNOTIFY_EVENT_PATH);
	path_put(&p);
	return 0;
}

/* An event about the name `path` in its directory (created, deleted, moved). */
static int name_event(const char *path, __u32 mask, u32 cookie)
{
	struct path parent;
	struct qstr name;
	int err = lookup_parent(path, &parent, &name);

	if (err)
		return err;
	fsnotify_name(mask, d_inode(parent.dentry), FSNOTIFY_EVENT_INODE, d_inode(parent.dentry), &name, cookie);
	path_put(&parent);
	return 0;
}

static int raise_event(__u8 op, __u8 flags, const char *p1, const char *p2)
{
	__u32 dir = (flags & FLAG_DIR) ? FS_ISDIR : 0;
	u32 cookie;
	int err;

	switch (op) {
	case OP_MODIFY:
		err = file_event(p1, FS_MODIFY);
		return err ? err : file_event(p1, FS_CLOSE_WRITE);
	case OP_ATTRIB:
		return file_event(p1, FS_ATTRIB);
	case OP_CREATE:
		return name_event(p1, FS_CREATE | dir, 0);
	case OP_DELETE:
		return name_event(p1, FS_DELETE | dir, 0);
	case OP_MOVE:
		if (!p2)
			return -EINVAL;
		cookie = fsnotify_get_cookie();
		err = name_event(p1, FS_MOVED_FROM | dir, cookie);
		return name_event(p2, FS_MOVED_TO | dir, cookie) ?: err;
	default:
		return -EINVAL;
	}
}

static ssize_t skiff_fsnotify_write(struct file *file, const char __user *buf, size_t len, loff_t *off)
{
	struct skiff_fsnotify_record rec;
	char *data, *p1 = NULL, *p2 = NULL;
	int err;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (len < sizeof(rec) || len > sizeof(rec) + 2 * PATH_MAX)
		return -EINVAL;
	data = memdup_user(buf, len);
	if (IS_ERR(data))
		return PTR_ERR(data);
	memcpy(&rec, data, sizeof(rec));
	err = -EINVAL;
	if (rec.len1 == 0 || sizeof(rec) + rec.len1 + rec.len2 != len)
		goto out;
	err = -ENOMEM;
	p1 = kstrndup(data + sizeof(rec), rec.len1, GFP_KERNEL);
	if (!p1)
		goto out;
	if (rec.len2) {
		p2 = kstrndup(data + sizeof(rec) + rec.len1, rec.len2, GFP_KERNEL);
		if (!p2)
			goto out;
	}
	err = -EINVAL;
	if (strlen(p1) != rec.len1 || (p2 && strlen(p2) != rec.len2))
		goto out;
	err = raise_event(rec.op, rec.flags, p1, p2);
out:
	kfree(p2);
	kfree(p1);
	kfree(data);
	return err ? err : len;
}

static const struct file_operations skiff_fsnotify_fops = {
	.owner = THIS_MODULE,
	.write = skiff_fsnotify_write,
	.llseek = noop_llseek,
};

static struct miscdevice skiff_fsnotify_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "skiff-fsnotify",
	.fops = &skiff_fsnotify_fops,
	.mode = 0600,
};

module_misc_device(skiff_fsnotify_dev);
