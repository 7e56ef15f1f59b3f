package android.media;

import android.content.Context;
import android.graphics.Bitmap;
import android.net.Uri;
import java.io.IOException;

public class MediaMetadataRetriever implements AutoCloseable {
    public static final int OPTION_CLOSEST = 3;
    public static final int METADATA_KEY_DURATION = 9;
    public MediaMetadataRetriever() { throw new RuntimeException("Stub!"); }
    public void setDataSource(Context context, Uri uri) throws IllegalArgumentException, SecurityException { throw new RuntimeException("Stub!"); }
    public String extractMetadata(int keyCode) { throw new RuntimeException("Stub!"); }
    public Bitmap getFrameAtTime(long timeUs, int option) { throw new RuntimeException("Stub!"); }
    public void release() throws IOException { throw new RuntimeException("Stub!"); }
    @Override public void close() throws IOException { throw new RuntimeException("Stub!"); }
}
